"""Importance-stability plot and node-attribution map of a graph classifier."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["plot_node_attributions", "plot_stability"]


def plot_stability(table: pd.DataFrame, *, ax=None, max_display: int = 15):
    """Bars: how often each feature ranked in the top-k across resamples (``importance_stability``).

    Unstable features (``stable == False``) are drawn in grey. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(table, pd.DataFrame) or "top_k_frequency" not in table.columns:
        raise ValueError(
            "table must be the DataFrame returned by importance_stability (needs top_k_frequency)"
        )
    df = (
        table.sort_values("top_k_frequency", ascending=False, kind="stable")
        .head(max_display)
        .iloc[::-1]
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.35 * len(df) + 1.2))
    stable = df["stable"].to_numpy(bool) if "stable" in df.columns else np.ones(len(df), bool)
    ax.barh(np.arange(len(df)), df["top_k_frequency"], color=np.where(stable, "#c0392b", "0.7"))
    ax.set_yticks(np.arange(len(df)))
    ax.set_yticklabels([str(i) for i in df.index], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of resamples in the top-k")
    return ax


def plot_node_attributions(
    pos, attributions, *, edge_index=None, image=None, ax=None, cmap: str = "magma"
):
    """Cells of one graph at their positions, coloured by attribution (which cells drove it).

    Parameters
    ----------
    pos : (N, 2) array
        Node coordinates as ``(x, y)`` (column, row) in pixels of ``image`` when one is given.
    attributions : (N,) array
        From ``GraphDiagnosticModel.node_attributions``.
    edge_index : (2, E) int array, optional
        Drawn as thin grey lines.
    image : (H, W, 3) array, optional
        Tissue underneath.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    pos = np.asarray(pos, float)
    a = np.asarray(attributions, float)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] != a.shape[0]:
        raise ValueError(
            f"pos must be (N, 2) with N = len(attributions) = {a.shape[0]}, got {pos.shape}"
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    if image is not None:
        ax.imshow(image)
    if edge_index is not None:
        ei = np.asarray(edge_index)
        ax.add_collection(
            LineCollection(np.stack([pos[ei[0]], pos[ei[1]]], axis=1), colors="0.7", lw=0.4)
        )
    sc = ax.scatter(pos[:, 0], pos[:, 1], c=a, cmap=cmap, s=18, edgecolors="k", linewidths=0.2)
    ax.figure.colorbar(sc, ax=ax, fraction=0.04, pad=0.02, label="attribution")
    if image is None:
        ax.invert_yaxis()
    ax.set_aspect("equal")
    return ax
