"""Univariable biomarker screens with Benjamini–Hochberg q-values, and adjusted Cox models.

``univariable_screen(X, durations, events)`` fits one Cox model per feature (hazard ratio per SD);
``univariable_screen(X, y)`` one logistic regression per feature (odds ratio per SD) plus the
feature's AUROC (binary ``y``) or a Kruskal–Wallis test (multi-class ``y``). Every row has a 95% CI,
a p-value and a BH q-value over all features tested.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["multivariable_cox", "univariable_screen"]

logger = logging.getLogger(__name__)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg q-values (statsmodels), NaN where p is NaN."""
    from statsmodels.stats.multitest import multipletests

    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def univariable_screen(X, durations_or_y, events=None, *, progress: bool = False) -> pd.DataFrame:
    """Screen every feature on its own against a survival outcome or a class label.

    Parameters
    ----------
    X : pandas.DataFrame of shape (n, p)
        Numeric features. Rows with NaN in a feature are left out of that feature's test only.
    durations_or_y : (n,) array-like
        Follow-up times when ``events`` is given, otherwise class labels.
    events : (n,) array-like, optional
        Event indicators (1 = event); selects the survival screen.
    progress : bool
        Progress bar over features.

    Returns
    -------
    pandas.DataFrame
        Indexed by feature, sorted by p-value. Survival: ``n, n_events, hr, hr_lower, hr_upper,
        p, q, c_index, direction`` (``hr`` per SD; ``c_index`` of the feature as a risk score;
        direction ``risk`` if HR > 1 else ``protective``). Binary: ``n, or, or_lower, or_upper, p,
        q, auroc, direction`` (``higher in <positive class>`` / ``lower in ...``). Multi-class:
        ``n, statistic, p, q`` (Kruskal–Wallis). Constant features get NaN and a ``note``.

    Examples
    --------
    >>> from xpath.datasets import synthetic_cohort
    >>> c = synthetic_cohort(300, n_null=5, seed=0)
    >>> table = univariable_screen(c.X, c.durations, c.events)
    >>> table.index[0], bool(table["q"].iloc[0] < 0.05)
    ('region.density_per_mm2.lymphocyte.tumour', True)
    """
    from tqdm.auto import tqdm

    from .._types import check_labels_1d, check_survival, check_table

    df = check_table(X)
    if events is not None:
        t, e = check_survival(durations_or_y, events, n=df.shape[0])
        rows = [
            _cox_one(df[c].to_numpy(float), t, e)
            for c in tqdm(df.columns, desc="screen", disable=not progress)
        ]
        cols = ["n", "n_events", "hr", "hr_lower", "hr_upper", "p", "c_index", "note"]
    else:
        y = check_labels_1d(durations_or_y, n=df.shape[0])
        classes = np.unique(y)
        if classes.size == 2:
            rows = [
                _logit_one(df[c].to_numpy(float), y == classes[1])
                for c in tqdm(df.columns, desc="screen", disable=not progress)
            ]
            cols = ["n", "or", "or_lower", "or_upper", "p", "auroc", "note"]
        else:
            rows = [
                _kruskal_one(df[c].to_numpy(float), y)
                for c in tqdm(df.columns, desc="screen", disable=not progress)
            ]
            cols = ["n", "statistic", "p", "note"]
    out = pd.DataFrame(
        rows, columns=cols, index=pd.Index([str(c) for c in df.columns], name="feature")
    )
    out.insert(out.columns.get_loc("p") + 1, "q", _bh(out["p"].to_numpy(float)))
    if events is not None:
        out["direction"] = np.where(
            out["hr"] > 1, "risk", np.where(out["hr"] < 1, "protective", "")
        )
    elif classes.size == 2:
        out["direction"] = np.where(
            out["or"] > 1,
            f"higher in {classes[1]}",
            np.where(out["or"] < 1, f"lower in {classes[1]}", ""),
        )
    return out.sort_values("p", kind="stable", na_position="last")


def _standardise(x: np.ndarray) -> np.ndarray | None:
    sd = x.std(ddof=1) if x.size > 1 else 0.0
    if not np.isfinite(sd) or sd == 0:
        return None
    return (x - x.mean()) / sd


def _cox_one(x: np.ndarray, t: np.ndarray, e: np.ndarray) -> tuple:
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError

    from ..models import concordance_harrell

    ok = ~np.isnan(x)
    z = _standardise(x[ok])
    n, ne = int(ok.sum()), int(e[ok].sum())
    if z is None or ne == 0:
        return (
            n,
            ne,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            "constant" if z is None else "no events",
        )
    data = pd.DataFrame({"z": z, "t": t[ok], "e": e[ok]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = CoxPHFitter().fit(data, "t", "e").summary.loc["z"]
    except ConvergenceError:
        return (n, ne, np.nan, np.nan, np.nan, np.nan, np.nan, "did not converge")
    c = concordance_harrell(z, t[ok], e[ok])
    return (
        n,
        ne,
        s["exp(coef)"],
        s["exp(coef) lower 95%"],
        s["exp(coef) upper 95%"],
        s["p"],
        c,
        "",
    )


def _logit_one(x: np.ndarray, positive: np.ndarray) -> tuple:
    import statsmodels.api as sm
    from scipy import stats
    from sklearn.metrics import roc_auc_score

    ok = ~np.isnan(x)
    z = _standardise(x[ok])
    yy = positive[ok].astype(float)
    n = int(ok.sum())
    if z is None or np.unique(yy).size < 2:
        return (
            n,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            "constant" if z is None else "single class",
        )
    auc = float(roc_auc_score(yy, x[ok]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = sm.Logit(yy, sm.add_constant(z)).fit(disp=0, maxiter=100)
        b, se, p = float(fit.params[1]), float(fit.bse[1]), float(fit.pvalues[1])
        if not np.isfinite(se) or se > 50:
            raise ValueError("separation")
        return (n, np.exp(b), np.exp(b - 1.959964 * se), np.exp(b + 1.959964 * se), p, auc, "")
    except (
        ValueError,
        np.linalg.LinAlgError,
        OverflowError,
    ):  # (quasi-)separation: use the rank test
        p = float(stats.mannwhitneyu(x[ok][yy == 1], x[ok][yy == 0]).pvalue)
        return (n, np.nan, np.nan, np.nan, p, auc, "separation: Mann-Whitney p")


def _kruskal_one(x: np.ndarray, y: np.ndarray) -> tuple:
    from scipy import stats

    ok = ~np.isnan(x)
    if _standardise(x[ok]) is None:
        return (int(ok.sum()), np.nan, np.nan, "constant")
    groups = [x[ok][y[ok] == c] for c in np.unique(y[ok])]
    res = stats.kruskal(*groups)
    return (int(ok.sum()), float(res.statistic), float(res.pvalue), "")


def multivariable_cox(
    X,
    durations,
    events,
    *,
    adjust_for: Sequence[str] = (),
    features: Sequence[str] | None = None,
    penalizer: float = 0.0,
    progress: bool = False,
) -> pd.DataFrame:
    """Each feature's hazard ratio per SD adjusted for covariates (one Cox model per feature).

    Parameters
    ----------
    X : pandas.DataFrame
        Features and the adjustment covariates.
    durations, events : (n,) array-like
    adjust_for : sequence of str
        Columns of ``X`` in every model (e.g. age, stage).
    features : sequence of str, optional
        Features to test (default: every column not in ``adjust_for``).
    penalizer : float
        Passed to :class:`xpath.models.CoxModel`.

    Returns
    -------
    pandas.DataFrame
        Indexed by feature, sorted by p: ``hr, hr_lower, hr_upper, p, q`` per SD of the feature,
        adjusted.
        Pre-flight errors (NaN, constant, collinear with an adjustment covariate) name the column.
    """
    from tqdm.auto import tqdm

    from .._types import check_table
    from ..models import CoxModel

    df = check_table(X)
    adjust = list(adjust_for)
    missing = [c for c in adjust if c not in df.columns]
    if missing:
        raise ValueError(f"adjust_for columns {missing} are not columns of X")
    feats = [c for c in df.columns if c not in adjust] if features is None else list(features)
    missing = [c for c in feats if c not in df.columns]
    if missing:
        raise ValueError(f"features {missing} are not columns of X")
    rows = []
    for f in tqdm(feats, desc="adjusted Cox", disable=not progress):
        m = CoxModel(penalizer=penalizer, cv=None).fit(df[[f, *adjust]], durations, events)
        s = m.summary.loc[f]
        rows.append((s["hr"], s["hr_lower"], s["hr_upper"], s["p"]))
    out = pd.DataFrame(
        rows, columns=["hr", "hr_lower", "hr_upper", "p"], index=pd.Index(feats, name="feature")
    )
    out["q"] = _bh(out["p"].to_numpy(float))
    out["adjusted_for"] = ", ".join(adjust)
    return out.sort_values("p", kind="stable")
