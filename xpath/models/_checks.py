"""Pre-flight checks of a regression design that only the models use.

The validators of tables, labels, survival outcomes and patient groups that other packages
use too live in :mod:`xpath._types`. Every check raises ``ValueError`` naming the argument,
what was expected and what was received, so that a user never sees a lifelines or
scikit-learn traceback for a malformed table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["check_events_per_variable", "check_features"]


def check_features(
    df: pd.DataFrame, *, name: str = "X", collinearity: float = 0.999, exclude: tuple = ()
) -> None:
    """Pre-flight checks for a regression design: NaN, constant and near-collinear columns.

    Raises ``ValueError`` naming the offending column(s). ``collinearity`` is the largest
    allowed absolute Pearson correlation between two columns; beyond pairs, a column that is
    an exact linear combination of others is found from a rank-revealing QR.
    """
    cols = [c for c in df.columns if c not in exclude]
    values = df[cols].to_numpy(dtype=float)
    nan = np.isnan(values).sum(axis=0)
    if nan.any():
        bad = {c: int(k) for c, k in zip(cols, nan, strict=True) if k}
        raise ValueError(
            f"{name} contains NaN in columns {bad} (column: NaN rows); "
            "impute or drop them before fitting"
        )
    sd = values.std(axis=0)
    const = [
        c
        for c, s, col in zip(cols, sd, values.T, strict=True)
        if s == 0 or s <= 1e-12 * max(1.0, abs(col[0]))
    ]
    if const:
        raise ValueError(
            f"{name} has constant columns {const}; they carry no information, drop them"
        )
    if len(cols) < 2:
        return
    z = (values - values.mean(axis=0)) / sd
    corr = (z.T @ z) / z.shape[0]
    iu = np.triu_indices(len(cols), k=1)
    r = np.abs(corr[iu])
    if (r > collinearity).any():
        k = int(np.argmax(r))
        a, b = cols[iu[0][k]], cols[iu[1][k]]
        raise ValueError(
            f"{name} columns {a!r} and {b!r} are near-collinear "
            f"(|r| = {r[k]:.4f} > {collinearity}); "
            "drop one of them or use a penalizer"
        )
    if z.shape[0] > z.shape[1]:
        from scipy.linalg import qr

        _, rr, piv = qr(z, mode="economic", pivoting=True)
        diag = np.abs(np.diag(rr))
        tol = diag[0] * max(z.shape) * np.finfo(float).eps * 1e3
        dependent = [cols[piv[i]] for i in range(diag.size) if diag[i] <= tol]
        if dependent:
            raise ValueError(
                f"{name} column(s) {dependent} are exact linear combinations of other columns; "
                "drop them"
            )
    else:
        raise ValueError(
            f"{name} has {z.shape[1]} columns but only {z.shape[0]} rows; reduce the features"
        )


def check_events_per_variable(n_events: int, n_features: int, *, minimum: float) -> None:
    """Raise when there are fewer than ``minimum`` events per variable."""
    epv = n_events / max(n_features, 1)
    if epv < minimum:
        raise ValueError(
            f"too few events per variable: {n_events} events for {n_features} features "
            f"({epv:.1f} per variable, minimum {minimum:g}); use fewer features, a penalizer, "
            "or lower min_events_per_variable"
        )
