"""Validation metrics: Harrell and Uno (IPCW) C-index, time-dependent AUC, IPCW Brier score,
AUROC, and percentile-bootstrap confidence intervals.

Risk scores follow the xpath convention: **higher = worse** (earlier event). lifelines'
``concordance_index`` expects the opposite sign; nothing here needs it.

The inverse-probability-of-censoring weights use a Kaplan–Meier estimate of the censoring
distribution ``G(t) = P(C > t)`` (Uno et al. 2011, Stat Med 30:1105; Graf et al. 1999, Stat Med
18:2529; Uno et al. 2007, JASA 102:1234 for the cumulative/dynamic AUC).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numba
import numpy as np

__all__ = [
    "auroc",
    "bootstrap_ci",
    "brier_score",
    "censoring_km",
    "concordance_harrell",
    "concordance_uno",
    "integrated_brier_score",
    "kaplan_meier",
    "time_dependent_auc",
]


# ----------------------------------------------------------------------------- Kaplan–Meier
def kaplan_meier(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier estimate as a right-continuous step function.

    Returns
    -------
    times : (m,) float64
        The distinct times with at least one event, ascending.
    survival : (m,) float64
        ``S(t)`` just after each of ``times``.
    """
    t = np.asarray(durations, float)
    e = np.asarray(events, bool)
    uniq, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=e, minlength=uniq.size)
    leaving = np.bincount(inv, minlength=uniq.size)
    at_risk = leaving[::-1].cumsum()[::-1]
    keep = deaths > 0
    surv = np.cumprod(1.0 - deaths[keep] / at_risk[keep])
    return uniq[keep], surv


def _step_eval(times: np.ndarray, values: np.ndarray, at: np.ndarray, *, left: bool) -> np.ndarray:
    """Evaluate a right-continuous step function starting at 1 (``left=True``: left limit)."""
    idx = np.searchsorted(times, at, side="left" if left else "right")
    padded = np.concatenate([[1.0], values])
    return padded[idx]


def censoring_km(durations: np.ndarray, events: np.ndarray) -> Callable[..., np.ndarray]:
    """The censoring survival function ``G(t) = P(C > t)`` estimated by Kaplan–Meier.

    Returns a function ``G(at, left=False)``; ``left=True`` gives ``G(t-)``, the weight used for
    an event observed at ``t`` (censorings tied with events are taken to happen after them).
    """
    times, surv = kaplan_meier(durations, 1 - np.asarray(events))

    def G(at, left: bool = False) -> np.ndarray:
        return _step_eval(times, surv, np.asarray(at, float), left=left)

    return G


# ------------------------------------------------------------------------------- C-index
@numba.njit(cache=True)
def _concordance_kernel(order, time, event, rank, weight, n_ranks):  # pragma: no cover - numba
    """Weighted concordance over comparable pairs with a Fenwick tree over risk ranks.

    Pairs (i, j) are comparable when i had an event and ``T_j > T_i`` or ``T_j == T_i`` with j
    censored. Concordant when risk_i > risk_j; risk ties count one half.
    """
    tree = np.zeros(n_ranks + 1, np.float64)
    num = 0.0
    den = 0.0
    n = order.size
    k = n - 1
    while k >= 0:
        # the block of equal times order[lo..k] (order ascending by time)
        lo = k
        while lo > 0 and time[order[lo - 1]] == time[order[k]]:
            lo -= 1
        # censored members of the block enter the tree first (they outlive tied events)
        for m in range(lo, k + 1):
            i = order[m]
            if event[i] == 0:
                r = rank[i] + 1
                while r <= n_ranks:
                    tree[r] += 1.0
                    r += r & (-r)
        total = 0.0
        r = n_ranks
        while r > 0:
            total += tree[r]
            r -= r & (-r)
        for m in range(lo, k + 1):
            i = order[m]
            if event[i] == 1 and weight[i] > 0.0:
                below = 0.0
                r = rank[i]
                while r > 0:
                    below += tree[r]
                    r -= r & (-r)
                upto = 0.0
                r = rank[i] + 1
                while r > 0:
                    upto += tree[r]
                    r -= r & (-r)
                num += weight[i] * (below + 0.5 * (upto - below))
                den += weight[i] * total
        for m in range(lo, k + 1):
            i = order[m]
            if event[i] == 1:
                r = rank[i] + 1
                while r <= n_ranks:
                    tree[r] += 1.0
                    r += r & (-r)
        k = lo - 1
    return num, den


def _concordance(risk, durations, events, weight) -> float:
    risk = np.asarray(risk, float)
    t = np.asarray(durations, float)
    e = np.asarray(events).astype(np.int64)
    if not (risk.shape == t.shape == e.shape) or risk.ndim != 1:
        raise ValueError(
            "risk, durations and events must be 1-D of equal length, "
            f"got {risk.shape}, {t.shape}, {e.shape}"
        )
    if np.isnan(risk).any():
        raise ValueError("risk contains NaN")
    uniq, rank = np.unique(risk, return_inverse=True)
    order = np.argsort(t, kind="stable")
    num, den = _concordance_kernel(
        order, t, e, rank.astype(np.int64), np.asarray(weight, float), uniq.size
    )
    if den == 0:
        return float("nan")
    return num / den


def concordance_harrell(risk: np.ndarray, durations: np.ndarray, events: np.ndarray) -> float:
    """Harrell's C-index for risk scores where **higher = worse**; O(n log n).

    Equals ``lifelines.utils.concordance_index(durations, -risk, events)``.
    """
    return _concordance(risk, durations, events, np.ones(len(np.asarray(durations)), float))


def concordance_uno(
    risk: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    *,
    tau: float | None = None,
    train_durations: np.ndarray | None = None,
    train_events: np.ndarray | None = None,
) -> float:
    """Uno's IPCW C-index truncated at ``tau`` (higher risk = worse).

    Each comparable pair with an event at ``T_i < tau`` is weighted by ``1 / G(T_i-)^2``, with ``G``
    the Kaplan–Meier censoring survival of the training data (default: the data themselves).
    ``tau`` defaults to the 90th percentile of follow-up, where ``G`` is still well estimated.
    """
    t = np.asarray(durations, float)
    e = np.asarray(events).astype(np.int64)
    G = censoring_km(
        t if train_durations is None else train_durations,
        e if train_events is None else train_events,
    )
    if tau is None:
        tau = float(np.quantile(t, 0.9))
    g = G(t, left=True)
    with np.errstate(divide="ignore"):
        w = np.where((e == 1) & (t < tau) & (g > 0), 1.0 / np.maximum(g, 1e-300) ** 2, 0.0)
    return _concordance(risk, t, e, w)


# ------------------------------------------------------------------- time-dependent metrics
def default_times(durations: np.ndarray, events: np.ndarray, *, n: int = 20) -> np.ndarray:
    """An evaluation grid between the 10th and 80th percentiles of the observed event times."""
    t = np.asarray(durations, float)[np.asarray(events) == 1]
    lo, hi = np.quantile(t, [0.1, 0.8])
    return np.unique(np.linspace(lo, hi, n))


def time_dependent_auc(
    risk: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    times: Sequence[float],
    *,
    train_durations: np.ndarray | None = None,
    train_events: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC(t) with IPCW (Uno 2007), higher risk = worse.

    Cases at ``t`` have ``T_i <= t`` with an event (weight ``1/G(T_i-)``); controls have
    ``T_j > t``. Returns ``(auc, mean_auc)`` where ``auc`` has shape ``(len(times),)`` and
    ``mean_auc`` is the average weighted by the change of the Kaplan–Meier survival (as in
    scikit-survival's ``cumulative_dynamic_auc``).
    """
    risk = np.asarray(risk, float)
    t = np.asarray(durations, float)
    e = np.asarray(events).astype(bool)
    times = np.atleast_1d(np.asarray(times, float))
    G = censoring_km(
        t if train_durations is None else train_durations,
        e.astype(int) if train_events is None else train_events,
    )
    g = G(t, left=True)
    w_all = np.where(g > 0, 1.0 / np.maximum(g, 1e-300), 0.0)
    auc = np.full(times.size, np.nan)
    for k, tk in enumerate(times):
        case = e & (t <= tk)
        ctrl_risk = np.sort(risk[t > tk])
        if case.sum() == 0 or ctrl_risk.size == 0:
            continue
        r = risk[case]
        below = np.searchsorted(ctrl_risk, r, side="left")
        upto = np.searchsorted(ctrl_risk, r, side="right")
        w = w_all[case]
        auc[k] = np.sum(w * (below + 0.5 * (upto - below))) / (w.sum() * ctrl_risk.size)
    km_t, km_s = kaplan_meier(t, e)
    s = _step_eval(km_t, km_s, times, left=False)
    ok = ~np.isnan(auc)
    if ok.sum() == 1:
        return auc, float(auc[ok][0])
    d = -np.diff(np.concatenate([[1.0], s[ok]]))
    mean = float(np.sum(auc[ok] * d) / d.sum()) if d.sum() > 0 else float(np.nanmean(auc))
    return auc, mean


def brier_score(
    survival: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    times: Sequence[float],
    *,
    train_durations: np.ndarray | None = None,
    train_events: np.ndarray | None = None,
) -> np.ndarray:
    """IPCW Brier score BS(t) (Graf 1999).

    Parameters
    ----------
    survival : (n, len(times)) array
        Predicted ``S(t | x_i)`` for each patient at each time.

    Returns
    -------
    (len(times),) array
    """
    t = np.asarray(durations, float)
    e = np.asarray(events).astype(bool)
    times = np.atleast_1d(np.asarray(times, float))
    S = np.asarray(survival, float)
    if S.shape != (t.size, times.size):
        raise ValueError(
            f"survival must have shape (n, len(times)) = {(t.size, times.size)}, got {S.shape}"
        )
    G = censoring_km(
        t if train_durations is None else train_durations,
        e.astype(int) if train_events is None else train_events,
    )
    g_i = G(t, left=True)
    g_t = G(times)
    died = (t[:, None] <= times[None, :]) & e[:, None]
    alive = t[:, None] > times[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(died, S**2 / g_i[:, None], 0.0) + np.where(
            alive, (1 - S) ** 2 / g_t[None, :], 0.0
        )
    return term.mean(axis=0)


def integrated_brier_score(
    survival: np.ndarray,
    durations: np.ndarray,
    events: np.ndarray,
    times: Sequence[float],
    **kwargs,
) -> float:
    """The IPCW Brier score integrated over ``times`` (trapezoid rule) divided by the time span."""
    times = np.asarray(times, float)
    if times.size < 2:
        raise ValueError(f"times must hold at least two time points, got {times.size}")
    bs = brier_score(survival, durations, events, times, **kwargs)
    return float(np.trapezoid(bs, times) / (times[-1] - times[0]))


# ------------------------------------------------------------------------ classification
def auroc(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray | None = None) -> float:
    """AUROC: binary (``proba`` of the positive class, or ``(n, 2)``) or macro one-vs-rest."""
    from sklearn.metrics import roc_auc_score

    proba = np.asarray(proba, float)
    if proba.ndim == 2 and proba.shape[1] == 2:
        proba = proba[:, 1]
    if proba.ndim == 1:
        labels = np.unique(y_true) if classes is None else classes
        return float(roc_auc_score(np.asarray(y_true) == labels[-1], proba))
    return float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=classes))


def bootstrap_ci(
    statistic: Callable[..., float],
    *arrays: np.ndarray,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic(*arrays)``.

    Rows are resampled with replacement; with ``groups`` (patient ids) whole patients are
    resampled, so that several images of one patient stay together. Resamples where the
    statistic is undefined (NaN, or raises ``ValueError``, e.g. a single class) are dropped.
    """
    if n_bootstrap < 1:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    if groups is not None:
        uniq, inv = np.unique(np.asarray(groups), return_inverse=True)
        members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
    values = np.full(n_bootstrap, np.nan)
    for b in range(n_bootstrap):
        if groups is None:
            idx = rng.integers(0, n, n)
        else:
            idx = np.concatenate([members[i] for i in rng.integers(0, uniq.size, uniq.size)])
        try:
            values[b] = statistic(*(np.asarray(a)[idx] for a in arrays))
        except ValueError:
            continue
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(values, [alpha, 1 - alpha])
    return float(lo), float(hi)
