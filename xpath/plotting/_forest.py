"""Forest plot of hazard ratios or odds ratios with 95% confidence intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_forest"]

_TICKS = (
    0.05,
    0.1,
    0.2,
    0.25,
    0.33,
    0.5,
    0.67,
    0.75,
    1.0,
    1.33,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    10.0,
    20.0,
)
_EFFECTS = (
    ("hr", "hr_lower", "hr_upper", "hazard ratio per SD"),
    ("or", "or_lower", "or_upper", "odds ratio per SD"),
)


def plot_forest(
    table: pd.DataFrame,
    *,
    ax=None,
    max_display: int = 20,
    sort: bool = True,
    xlabel: str | None = None,
    pvalue: str | None = None,
):
    """Forest plot: one row per feature, point estimate and 95% CI on a log axis, reference at 1.

    Parameters
    ----------
    table : pandas.DataFrame
        Indexed by feature (or with a ``feature`` column), holding ``hr, hr_lower, hr_upper``
        (``CoxModel.summary``, ``univariable_screen`` on survival) or ``or, or_lower, or_upper``.
    max_display : int
        Show at most this many rows (the smallest p-values / q-values first).
    sort : bool
        Order by p-value (``q`` if present, else ``p``).
    pvalue : str, optional
        Column to print on the right (default ``q`` if present, else ``p``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    df = table.set_index("feature") if "feature" in table.columns else table
    for est, lo, hi, label in _EFFECTS:
        if {est, lo, hi} <= set(df.columns):
            break
    else:
        raise ValueError(
            "table must have columns hr/hr_lower/hr_upper or or/or_lower/or_upper, "
            f"got {list(df.columns)}"
        )
    pcol = pvalue or ("q" if "q" in df.columns else ("p" if "p" in df.columns else None))
    df = df[np.isfinite(df[est].to_numpy(float))]
    if sort and pcol is not None:
        df = df.sort_values(pcol, kind="stable")
    df = df.head(max_display).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.35 * len(df) + 1.2))
    y = np.arange(len(df))
    e, l, h = (df[c].to_numpy(float) for c in (est, lo, hi))
    colors = np.where(l > 1, "#c0392b", np.where(h < 1, "#2471a3", "0.35"))
    ax.hlines(y, l, h, color=colors, lw=1.5)
    ax.scatter(e, y, color=colors, marker="s", s=30, zorder=3)
    ax.axvline(1.0, color="0.5", ls="--", lw=1)
    ax.set_xscale("log")
    lo_x, hi_x = float(np.nanmin(l)), float(np.nanmax(h))
    ticks = [v for v in _TICKS if lo_x / 1.3 <= v <= hi_x * 1.3] or [1.0]
    gap = np.log10(hi_x * 1.3 / (lo_x / 1.3)) / 8  # at most ~8 labels: wide intervals crowded them
    kept = [1.0] if 1.0 in ticks else []
    for v in sorted(ticks, key=lambda t: abs(np.log10(t))):
        if all(abs(np.log10(v / k)) >= gap for k in kept):
            kept.append(v)
    ticks = sorted(kept) or [1.0]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{v:g}" for v in ticks])
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_yticks(y)
    ax.set_yticklabels([str(i) for i in df.index], fontsize=8)
    ax.set_ylim(-0.7, len(df) - 0.3)
    ax.set_xlabel(xlabel or label)
    if pcol is not None:
        trans = ax.get_yaxis_transform()
        for yi, pv in zip(y, df[pcol].to_numpy(float), strict=True):
            ax.text(1.02, yi, f"{pcol}={pv:.2g}", transform=trans, va="center", fontsize=7)
    return ax
