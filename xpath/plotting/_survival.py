"""Survival plots: Kaplan–Meier curves with at-risk table and log-rank p; survival calibration."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plot_km", "plot_survival_calibration"]


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6, 4.5))
    return ax


def plot_km(
    durations,
    events,
    groups=None,
    *,
    ax=None,
    at_risk: bool = True,
    logrank: bool = True,
    order: Sequence | None = None,
    ci: bool = True,
    xlabel: str = "time",
):
    """Kaplan–Meier curves (one per group) with 95% CI, an at-risk table and the log-rank p.

    Parameters
    ----------
    durations, events : (n,) array-like
        Follow-up time and event indicator (1 = event).
    groups : (n,) array-like, optional
        Group of each patient (e.g. risk group); one curve per group, in ``order`` if given.
    ax : matplotlib Axes, optional
    at_risk : bool
        Draw the number at risk below the axes (lifelines ``add_at_risk_counts``).
    logrank : bool
        Write the multivariate log-rank p-value in the title (needs >= 2 groups).

    Returns
    -------
    matplotlib.axes.Axes
    """
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts
    from lifelines.statistics import multivariate_logrank_test

    from .._types import check_survival

    t, e = check_survival(durations, events)
    ax = _axes(ax)
    g = np.zeros(t.size, dtype=object) if groups is None else np.asarray(groups)
    if g.shape[0] != t.size:
        raise ValueError(f"groups has {g.shape[0]} entries but durations has {t.size}")
    levels = list(order) if order is not None else list(dict.fromkeys(np.sort(np.unique(g))))
    levels = [lv for lv in levels if np.any(g == lv)]
    fitters = []
    for lv in levels:
        m = g == lv
        label = "all" if groups is None else f"{lv} (n={int(m.sum())})"
        kmf = KaplanMeierFitter(label=label).fit(t[m], e[m])
        kmf.plot_survival_function(ax=ax, ci_show=ci)
        fitters.append(kmf)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    if logrank and len(levels) >= 2:
        res = multivariate_logrank_test(t, g, e)
        ax.set_title(f"log-rank p = {res.p_value:.2g}")
    if at_risk:
        add_at_risk_counts(*fitters, ax=ax, fig=ax.figure, rows_to_show=["At risk"])
    return ax


def plot_survival_calibration(
    predicted_survival,
    durations,
    events,
    time: float,
    *,
    n_bins: int = 5,
    ax=None,
):
    """Predicted versus observed (Kaplan–Meier) survival at ``time`` in quantile bins of prediction.

    Parameters
    ----------
    predicted_survival : (n,) array-like
        Predicted ``S(time | x)`` of each patient (e.g. out-of-fold).
    durations, events : (n,) array-like
    time : float
        The horizon.
    n_bins : int
        Number of quantile bins.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from lifelines import KaplanMeierFitter

    from .._types import check_survival

    t, e = check_survival(durations, events)
    p = np.asarray(predicted_survival, float)
    if p.shape != t.shape:
        raise ValueError(f"predicted_survival must have shape {t.shape}, got {p.shape}")
    ax = _axes(ax)
    edges = np.quantile(p, np.linspace(0, 1, n_bins + 1))
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    xs, ys, lo, hi = [], [], [], []
    for k in range(n_bins):
        m = b == k
        if m.sum() < 2:
            continue
        kmf = KaplanMeierFitter().fit(t[m], e[m])
        ys.append(float(kmf.survival_function_at_times(time).iloc[0]))
        ci = kmf.confidence_interval_survival_function_
        idx = np.searchsorted(ci.index.to_numpy(), time, side="right") - 1
        lo.append(float(ci.iloc[max(idx, 0), 0]))
        hi.append(float(ci.iloc[max(idx, 0), 1]))
        xs.append(float(p[m].mean()))
    xs, ys = np.array(xs), np.array(ys)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="ideal")
    ax.errorbar(
        xs,
        ys,
        yerr=[ys - np.array(lo), np.array(hi) - ys],
        fmt="o-",
        capsize=3,
        label="observed (Kaplan–Meier)",
    )
    ax.set_xlabel(f"predicted survival at t = {time:.4g}")
    ax.set_ylabel(f"observed survival at t = {time:.4g}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", frameon=False)
    return ax
