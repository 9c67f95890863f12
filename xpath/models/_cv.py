"""Patient-grouped cross-validation splits.

No patient is ever in both the training and the test part of a fold: with ``groups`` the
folds are built with ``StratifiedGroupKFold`` (stratified on the class or on the event
indicator), without ``groups`` every row is its own patient (``StratifiedKFold``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["grouped_splits"]


def grouped_splits(
    strata: np.ndarray, groups: np.ndarray | None, *, n_splits: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return ``n_splits`` (train_idx, test_idx) pairs, grouped by patient when ``groups`` is given.

    Parameters
    ----------
    strata : (n,) array
        Labels to balance across folds (class labels, or event indicators for survival).
    groups : (n,) array or None
        Patient ids.
    n_splits : int
        Number of folds (>= 2).
    seed : int
        Shuffling seed.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ValueError(f"cv must be an integer >= 2 (number of folds) or None, got {n_splits!r}")
    strata = np.asarray(strata)
    _, counts = np.unique(strata, return_counts=True)
    if groups is None:
        if counts.min() < n_splits:
            raise ValueError(
                f"the smallest class/stratum has {counts.min()} rows, "
                f"fewer than cv={n_splits} folds"
            )
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(strata.size), strata))
    else:
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(strata.size), strata, groups))
        for train, test in splits:
            if np.intersect1d(
                groups[train], groups[test]
            ).size:  # pragma: no cover - sklearn guarantees it
                raise RuntimeError("a patient is in both the training and the test part of a fold")
    return [(np.asarray(a), np.asarray(b)) for a, b in splits]
