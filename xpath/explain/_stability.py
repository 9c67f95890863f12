"""``importance_stability``: how often each feature ranks in the top-k across resamples or folds.

A biomarker that is important in one resample only is flagged: its importance is a property of
that sample, not of the disease.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

__all__ = ["feature_importance", "importance_stability"]

logger = logging.getLogger(__name__)


def feature_importance(model, X, *, importance: str = "auto", seed: int = 0) -> pd.Series:
    """Importance of each feature of a fitted model.

    ``importance="coef"``: |log hazard ratio per SD| of a ``CoxModel``. ``"shap"``: mean
    |SHAP value| over the rows of ``X`` (:func:`xpath.explain.shap_values`; multi-class
    explanations are averaged over classes). ``"auto"``: ``coef`` for ``CoxModel``, ``shap``
    otherwise.
    """
    from ..models import CoxModel
    from ._shap import shap_values

    if importance not in ("auto", "coef", "shap"):
        raise ValueError(f"importance must be 'auto', 'coef' or 'shap', got {importance!r}")
    if importance == "coef" or (importance == "auto" and isinstance(model, CoxModel)):
        if not isinstance(model, CoxModel):
            raise TypeError(f"importance='coef' needs a CoxModel, got {type(model).__name__}")
        return model.coef_.abs()
    expl = shap_values(model, X, seed=seed)
    vals = np.abs(np.asarray(expl.values))
    imp = vals.mean(axis=0)
    if imp.ndim == 2:
        imp = imp.mean(axis=1)
    return pd.Series(imp, index=list(expl.feature_names))


def importance_stability(
    model,
    X,
    *outcome,
    groups=None,
    method: str = "bootstrap",
    n_resamples: int = 20,
    top_k: int = 10,
    importance: str = "auto",
    threshold: float = 0.5,
    seed: int = 0,
    progress: bool = False,
) -> pd.DataFrame:
    """Refit ``model`` on resamples and count how often each feature is in the top-k.

    Parameters
    ----------
    model : CoxModel or DiagnosticModel (fitted or not)
        Cloned and refitted (without internal cross-validation) on each resample.
    X : pandas.DataFrame of shape (n, p)
    *outcome
        ``durations, events`` for a ``CoxModel``; ``y`` for a classifier.
    groups : (n,) array-like, optional
        Patient ids: bootstrap resamples and folds keep each patient's rows together.
    method : {"bootstrap", "cv"}
        Bootstrap resamples of patients, or the training parts of ``n_resamples`` folds.
    n_resamples : int
    top_k : int
        A feature "counts" in a resample when its importance rank is <= ``top_k``.
    importance : {"auto", "coef", "shap"}
        See :func:`feature_importance`.
    threshold : float
        ``stable`` is ``top_k_frequency >= threshold``.

    Returns
    -------
    pandas.DataFrame
        Indexed by feature, sorted by ``top_k_frequency``: ``mean_importance, sd_importance,
        mean_rank, top_k_count, top_k_frequency, stable, flag`` where ``flag`` is
        ``"top-k in one resample only"``, ``"unstable"`` (in the top-k sometimes, below threshold)
        or ``""``.
    """
    from .._types import check_table
    from ..models import CoxModel

    if method not in ("bootstrap", "cv"):
        raise ValueError(f"method must be 'bootstrap' or 'cv', got {method!r}")
    if not isinstance(n_resamples, (int, np.integer)) or n_resamples < 2:
        raise ValueError(f"n_resamples must be an integer >= 2, got {n_resamples!r}")
    df = check_table(X)
    is_cox = isinstance(model, CoxModel)
    arrays, g = _check_outcome(df, outcome, groups, is_cox=is_cox)
    df = df.drop(columns=[o for o in outcome if isinstance(o, str)])  # the outcome is no covariate
    features = [c for c in df.columns if not (is_cox and c in model._strata())]
    samples = _resamples(method, df.shape[0], n_resamples, g, seed=seed)
    imps = _refit_importances(model, df, arrays, samples, features, importance=importance, seed=seed,
                              progress=progress)
    return _frequency_table(imps, top_k=top_k, threshold=threshold, method=method)


def _check_outcome(df: pd.DataFrame, outcome: tuple, groups, *, is_cox: bool):
    """``(outcome arrays, group ids or None)``, each with one entry per row of ``df``."""
    n = df.shape[0]
    if is_cox and len(outcome) != 2:
        raise TypeError("a CoxModel needs importance_stability(model, X, durations, events)")
    if not is_cox and len(outcome) != 1:
        raise TypeError("a classifier needs importance_stability(model, X, y)")
    arrays = [np.asarray(df[o]) if isinstance(o, str) else np.asarray(o) for o in outcome]
    for a, name in zip(arrays, ("durations", "events") if is_cox else ("y",), strict=True):
        if a.shape[0] != n:
            raise ValueError(f"{name} has {a.shape[0]} entries but X has {n} rows; they must match")
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape[0] != n:
        raise ValueError(f"groups has {g.shape[0]} entries but X has {n} rows")
    return arrays, g


def _resamples(method: str, n: int, n_resamples: int, g, *, seed: int) -> list[np.ndarray]:
    """Row indices of each resample: bootstrap draws of rows (or of patients), or CV training parts."""
    from sklearn.model_selection import GroupKFold, KFold

    rng = np.random.default_rng(seed)
    if method == "bootstrap":
        if g is None:
            return [rng.integers(0, n, n) for _ in range(n_resamples)]
        uniq, inv = np.unique(g, return_inverse=True)
        members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
        return [
            np.concatenate([members[i] for i in rng.integers(0, uniq.size, uniq.size)])
            for _ in range(n_resamples)
        ]
    splitter = (
        KFold(n_resamples, shuffle=True, random_state=seed)
        if g is None
        else GroupKFold(n_resamples)
    )
    return [tr for tr, _ in splitter.split(np.zeros(n), groups=g)]


def _refit_importances(model, df, arrays, samples, features, *, importance, seed, progress) -> list[pd.Series]:
    """Importance of ``features`` in a clone of ``model`` refitted on each resample (unfittable ones skipped)."""
    from sklearn.base import clone
    from tqdm.auto import tqdm

    base = clone(model)
    if "cv" in base.get_params():
        base.set_params(cv=None)
    imps = []
    for b, idx in enumerate(tqdm(samples, desc="stability", disable=not progress)):
        m = clone(base)
        sub = df.iloc[idx].reset_index(drop=True)
        ys = [a[idx] for a in arrays]
        try:
            m.fit(sub, *ys)
        except ValueError as err:  # e.g. a bootstrap sample where a rare feature is constant
            logger.warning("stability resample %d skipped: %s", b, err)
            continue
        imps.append(feature_importance(m, sub, importance=importance, seed=seed).reindex(features))
    if len(imps) < 2:
        raise ValueError(
            f"only {len(imps)} of {len(samples)} resamples could be fitted; see the log"
        )
    return imps


def _frequency_table(imps: list[pd.Series], *, top_k: int, threshold: float, method: str) -> pd.DataFrame:
    """The returned table of :func:`importance_stability` from the importances of each resample."""
    table = pd.DataFrame(imps).reset_index(drop=True)  # (resamples, features)
    ranks = table.rank(axis=1, ascending=False, method="min")
    count = (ranks <= top_k).sum(axis=0)
    freq = count / len(table)
    out = pd.DataFrame(
        {
            "mean_importance": table.mean(axis=0),
            "sd_importance": table.std(axis=0, ddof=1),
            "mean_rank": ranks.mean(axis=0),
            "top_k_count": count.astype(int),
            "top_k_frequency": freq,
            "stable": freq >= threshold,
        }
    )
    out["flag"] = np.where(
        count == 1,
        "top-k in one resample only",
        np.where((count > 1) & (freq < threshold), "unstable", ""),
    )
    out.index.name = "feature"
    out.attrs.update(method=method, n_resamples=len(table), top_k=top_k, threshold=threshold)
    return out.sort_values(["top_k_frequency", "mean_importance"], ascending=False, kind="stable")
