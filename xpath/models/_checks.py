"""Input validation shared by the models: tables, labels, survival outcomes, patient groups.

Every check raises ``ValueError``/``TypeError`` naming the argument, what was expected and
what was received, so that a user never sees a lifelines or scikit-learn traceback for a
malformed table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "check_events_per_variable",
    "check_features",
    "check_groups",
    "check_labels_1d",
    "check_survival",
    "check_table",
]


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (pd.Series, pd.DataFrame)):
        return f"{type(value).__name__} of shape {value.shape}"
    return f"{type(value).__name__}"


def check_table(X: Any, *, name: str = "X", allow_nan: bool = True) -> pd.DataFrame:
    """Return ``X`` as a numeric ``DataFrame`` (a copy is never made when it already is one).

    numpy arrays get columns ``x0, x1, ...``. Non-numeric columns raise ``TypeError`` naming
    them (encode categories first, e.g. with ``pandas.get_dummies``).
    """
    if isinstance(X, pd.DataFrame):
        df = X
    elif isinstance(X, np.ndarray) and X.ndim == 2:
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    else:
        raise TypeError(
            f"{name} must be a pandas DataFrame or a 2-D numpy array, got {_describe(X)}"
        )
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column, got shape {df.shape}")
    if df.columns.duplicated().any():
        dup = list(df.columns[df.columns.duplicated()])
        raise ValueError(f"{name} has duplicated column names {dup}")
    bad = [
        c
        for c in df.columns
        if not (pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c]))
    ]
    if bad:
        kinds = {c: str(df[c].dtype) for c in bad[:5]}
        raise TypeError(
            f"{name} must hold numeric columns only; non-numeric columns {kinds} "
            "(encode them first, e.g. pandas.get_dummies(X, drop_first=True, dtype=float))"
        )
    values = df.to_numpy(dtype=float)
    if np.isinf(values).any():
        cols = list(df.columns[np.isinf(values).any(axis=0)])
        raise ValueError(f"{name} contains infinite values in columns {cols}")
    if not allow_nan and np.isnan(values).any():
        counts = pd.Series(np.isnan(values).sum(axis=0), index=df.columns)
        counts = counts[counts > 0]
        raise ValueError(
            f"{name} contains NaN in columns {dict(counts.head(10))} (column: number of NaN rows); "
            "impute or drop them before fitting"
        )
    return df


def _as_1d(
    values: Any, *, name: str, n: int | None, frame: pd.DataFrame | None = None
) -> np.ndarray:
    if isinstance(values, str):
        if frame is None or values not in frame.columns:
            raise ValueError(f"{name}={values!r} is not a column of X")
        values = frame[values]
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got {_describe(arr)}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but X has {n} rows; they must match")
    return arr


def check_survival(
    durations: Any, events: Any, *, n: int | None = None, frame: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a survival outcome.

    Parameters
    ----------
    durations : array-like of shape (n,) or str
        Follow-up times (any unit, >= 0, no NaN). A string names a column of ``frame``.
    events : array-like of shape (n,) or str
        1 = event observed, 0 = censored (booleans accepted).
    n : int, optional
        Expected length (rows of ``X``).

    Returns
    -------
    durations : (n,) float64, events : (n,) int64
    """
    t = _as_1d(durations, name="durations", n=n, frame=frame)
    e = _as_1d(events, name="events", n=None if n is None else n, frame=frame)
    if e.shape[0] != t.shape[0]:
        raise ValueError(
            f"events has {e.shape[0]} entries but durations has {t.shape[0]}; they must match"
        )
    if not (np.issubdtype(t.dtype, np.number) and not np.issubdtype(t.dtype, np.complexfloating)):
        raise TypeError(f"durations must be numeric, got dtype {t.dtype}")
    t = t.astype(float)
    if np.isnan(t).any():
        rows = np.flatnonzero(np.isnan(t))
        raise ValueError(
            f"durations contains NaN at {rows.size} rows (first positions {rows[:5].tolist()})"
        )
    if np.isinf(t).any():
        raise ValueError("durations contains infinite values")
    if (t < 0).any():
        rows = np.flatnonzero(t < 0)
        raise ValueError(
            f"durations must be >= 0, got {rows.size} negative values (minimum {t.min():g}, "
            f"first positions {rows[:5].tolist()})"
        )
    if e.dtype == bool:
        e = e.astype(np.int64)
    if not np.issubdtype(e.dtype, np.number):
        raise TypeError(f"events must be 0/1 (or boolean), got dtype {e.dtype}")
    ef = e.astype(float)
    if np.isnan(ef).any():
        raise ValueError("events contains NaN; expected 0 (censored) or 1 (event)")
    bad = ~np.isin(ef, (0.0, 1.0))
    if bad.any():
        raise ValueError(
            "events must be 0 (censored) or 1 (event), got values "
            f"{np.unique(ef[bad])[:5].tolist()}"
        )
    e = ef.astype(np.int64)
    if e.sum() == 0:
        raise ValueError(
            f"events contains no events (all {e.size} observations are censored); "
            "a survival model cannot be fitted"
        )
    return t, e


def check_labels_1d(y: Any, *, n: int | None = None) -> np.ndarray:
    """Validate class labels: 1-D, no missing values, at least two classes."""
    arr = _as_1d(y, name="y", n=n)
    if pd.isna(arr).any():
        raise ValueError(f"y contains {int(pd.isna(arr).sum())} missing labels")
    classes = np.unique(arr)
    if classes.size < 2:
        raise ValueError(
            f"y must contain at least two classes, got a single class {classes.tolist()}"
        )
    return arr


def check_groups(groups: Any, *, n: int, n_splits: int | None = None) -> np.ndarray | None:
    """Validate patient ids for grouped cross-validation (``None`` passes through)."""
    if groups is None:
        return None
    g = _as_1d(groups, name="groups", n=n)
    if pd.isna(g).any():
        raise ValueError("groups contains missing patient ids")
    n_groups = np.unique(g).size
    if n_groups < 2:
        raise ValueError(
            f"groups must contain at least 2 distinct patients for grouped CV, got {n_groups}"
        )
    if n_splits is not None and n_groups < n_splits:
        raise ValueError(f"groups has {n_groups} distinct patients, fewer than cv={n_splits} folds")
    return g


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
