"""Diagnostic-model plots: reliability (calibration) curve and ROC curve."""

from __future__ import annotations

import numpy as np

__all__ = ["plot_calibration", "plot_roc"]


def _binary(y_true, proba, positive):
    y = np.asarray(y_true)
    p = np.asarray(proba, float)
    if p.ndim == 2:
        if p.shape[1] != 2:
            raise ValueError(f"proba must be (n,) or (n, 2) for a binary plot, got shape {p.shape}")
        p = p[:, 1]
    if p.shape[0] != y.shape[0]:
        raise ValueError(f"proba has {p.shape[0]} rows but y_true has {y.shape[0]}")
    classes = np.unique(y)
    pos = classes[-1] if positive is None else positive
    return (y == pos).astype(int), p


def plot_calibration(
    y_true, proba, *, n_bins: int = 10, strategy: str = "quantile", positive=None, ax=None
):
    """Reliability diagram: observed fraction of positives per bin of predicted probability.

    Parameters
    ----------
    y_true : (n,) labels
    proba : (n,) or (n, 2) predicted probability of the positive class
    n_bins : int
    strategy : {"quantile", "uniform"}
        Bin edges (sklearn ``calibration_curve``).
    positive : label, optional
        The positive class (default: the largest label).

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    y, p = _binary(y_true, proba, positive)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1, label="ideal")
    ax.plot(mean, frac, "o-", color="#c0392b", label=f"model (Brier {brier_score_loss(y, p):.3f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed fraction of positives")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", frameon=False)
    return ax


def plot_roc(y_true, proba, *, positive=None, ax=None, label: str = "model", color: str = "#c0392b"):
    """ROC curve with the AUROC in the legend; returns the Axes (call twice on one Axes to compare)."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    y, p = _binary(y_true, proba, positive)
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    fpr, tpr, _ = roc_curve(y, p)
    ax.plot([0, 1], [0, 1], ls="--", color="0.6", lw=1)
    ax.plot(fpr, tpr, color=color, label=f"{label} (AUROC {roc_auc_score(y, p):.3f})")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate")
    ax.legend(loc="lower right", frameon=False)
    return ax
