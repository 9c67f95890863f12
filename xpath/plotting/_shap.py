"""SHAP plots drawn on a given Axes: mean |SHAP| bar, beeswarm, waterfall for one patient.

They take a ``shap.Explanation`` of shape ``(n, p)`` (select a class of a multi-class
explanation first: ``explanation[:, :, k]``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_shap_bar", "plot_shap_beeswarm", "plot_shap_waterfall"]


def _check(explanation) -> tuple[np.ndarray, list[str]]:
    values = getattr(explanation, "values", None)
    if values is None:
        raise TypeError(f"explanation must be a shap.Explanation, got {type(explanation).__name__}")
    values = np.asarray(values, float)
    if values.ndim != 2:
        raise ValueError(
            f"explanation must have shape (n, p); got {values.shape} "
            "(select a class first: explanation[:, :, k])"
        )
    names = explanation.feature_names
    names = [f"x{i}" for i in range(values.shape[1])] if names is None else [str(n) for n in names]
    return values, names


def _axes(ax, n_rows):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.5, 0.35 * n_rows + 1.3))
    return ax


def plot_shap_bar(explanation, *, ax=None, max_display: int = 10):
    """Horizontal bars of mean |SHAP| per feature, largest on top. Returns the Axes."""
    values, names = _check(explanation)
    imp = np.abs(values).mean(axis=0)
    order = np.argsort(-imp, kind="stable")[:max_display][::-1]
    ax = _axes(ax, order.size)
    ax.barh(np.arange(order.size), imp[order], color="#c0392b")
    ax.set_yticks(np.arange(order.size))
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    ax.set_xlabel("mean |SHAP value|")
    return ax


def plot_shap_beeswarm(explanation, *, ax=None, max_display: int = 10, seed: int = 0):
    """One row per feature: a dot per patient at its SHAP value, coloured by the feature's value.

    Colour is the within-feature rank of the value (blue = low, red = high); NaN values are grey.
    Returns the Axes.
    """
    import matplotlib.pyplot as plt

    values, names = _check(explanation)
    data = explanation.data
    data = (
        np.full(values.shape, np.nan)
        if data is None
        else np.asarray(data, float).reshape(values.shape)
    )
    imp = np.abs(values).mean(axis=0)
    order = np.argsort(-imp, kind="stable")[:max_display][::-1]
    ax = _axes(ax, order.size)
    rng = np.random.default_rng(seed)
    cmap = plt.get_cmap("coolwarm")
    for row, j in enumerate(order):
        v = values[:, j]
        x = data[:, j]
        # density-scaled vertical jitter so that crowded regions spread out
        hist, edges = np.histogram(v, bins=50)
        dens = hist[np.clip(np.searchsorted(edges, v, side="right") - 1, 0, hist.size - 1)]
        jitter = rng.uniform(-1, 1, v.size) * 0.4 * dens / max(dens.max(), 1)
        ok = ~np.isnan(x)
        colour = np.full(v.size, 0.5)
        if ok.sum() > 1:
            ranks = np.argsort(np.argsort(x[ok], kind="stable"), kind="stable")
            colour[ok] = ranks / (ok.sum() - 1)
        ax.scatter(
            v[ok], row + jitter[ok], c=colour[ok], cmap=cmap, vmin=0, vmax=1, s=6, alpha=0.8, lw=0
        )
        ax.scatter(v[~ok], row + jitter[~ok], color="0.6", s=6, alpha=0.8, lw=0)
    ax.axvline(0, color="0.5", lw=1)
    ax.set_yticks(np.arange(order.size))
    ax.set_yticklabels([names[i] for i in order], fontsize=8)
    ax.set_xlabel("SHAP value (impact on model output)")
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    cb = ax.figure.colorbar(sm, ax=ax, pad=0.02, fraction=0.04)
    cb.set_ticks([0, 1])
    cb.set_ticklabels(["low", "high"])
    cb.set_label("feature value")
    return ax


def plot_shap_waterfall(explanation, index: int = 0, *, ax=None, max_display: int = 10):
    """Waterfall for one row: from the base value through each feature's SHAP value to f(x).

    Features beyond ``max_display`` are summed into one bar. Red bars raise the output, blue
    bars lower it. Returns the Axes.
    """
    values, names = _check(explanation)
    if not -values.shape[0] <= index < values.shape[0]:
        raise IndexError(f"index {index} out of range for an explanation of {values.shape[0]} rows")
    v = values[index]
    base = float(
        np.asarray(explanation.base_values, float).reshape(-1)[index]
        if np.ndim(explanation.base_values)
        else explanation.base_values
    )
    data = explanation.data
    x = None if data is None else np.asarray(data, float).reshape(values.shape)[index]
    order = np.argsort(-np.abs(v), kind="stable")
    shown, rest = order[:max_display], order[max_display:]
    labels = [f"{names[j]} = {x[j]:.3g}" if x is not None else names[j] for j in shown]
    contrib = list(v[shown])
    if rest.size:
        labels.append(f"{rest.size} other features")
        contrib.append(float(v[rest].sum()))
    labels, contrib = labels[::-1], contrib[::-1]
    ax = _axes(ax, len(labels))
    # cumulative positions: the bottom bar starts at the base value, the top one ends at f(x)
    starts = base + np.concatenate([[0.0], np.cumsum(contrib)])[:-1]
    for row, (s, c) in enumerate(zip(starts, contrib, strict=True)):
        ax.barh(row, c, left=s, color="#c0392b" if c > 0 else "#2471a3", height=0.7)
        ax.text(max(s, s + c), row, f" {c:+.3g}", va="center", ha="left", fontsize=7)
    fx = base + float(np.sum(v))
    ax.axvline(base, color="0.5", ls="--", lw=1)
    ax.axvline(fx, color="0.2", ls=":", lw=1)
    ax.set_yticks(np.arange(len(labels)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(f"model output (base {base:.3g} → f(x) {fx:.3g})")
    return ax
