"""Overlays on the tissue: masks coloured by prompt, instances coloured by class or value, cell graphs.

Every function takes ``ax=None`` and returns the Axes; nothing calls ``show()``.
Instance outlines and per-object colours are computed for all objects at once
(look-up tables indexed by the label image), never object by object.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["plot_graph", "plot_instances", "plot_overlay"]


def _axes(ax, shape, size: float = 6.0):
    import matplotlib.pyplot as plt

    if ax is None:
        h, w = shape[:2]
        _, ax = plt.subplots(figsize=(size, size * h / max(w, 1)))
    return ax


def _base(image, shape=None) -> np.ndarray:
    from .._types import check_image

    if image is None:
        if shape is None:
            raise ValueError("give an image or a label image to define the canvas")
        return np.ones((*shape[:2], 3), np.float32)
    return check_image(image).astype(np.float32) / 255.0


def _outlines(labels: np.ndarray) -> np.ndarray:
    """Inner boundary pixels of every object (a pixel whose 4-neighbour has another id)."""
    edge = np.zeros(labels.shape, bool)
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return edge & (labels > 0)


def _colour(name: str, colors: Mapping | None):
    """RGB in [0, 1] of ``name``: from ``colors``, else :func:`xpath.io.class_colour` (the QuPath colour)."""
    if colors is not None and name in colors:
        from matplotlib.colors import to_rgb

        c = colors[name]
        return np.asarray(to_rgb(c) if isinstance(c, str) or max(c) <= 1 else np.asarray(c) / 255.0, np.float32)
    from ..io import class_colour

    return np.asarray(class_colour(name), np.float32) / 255.0


def plot_overlay(
    image: np.ndarray | None,
    masks: Mapping[str, np.ndarray] | None = None,
    *,
    instances: Mapping[str, np.ndarray] | None = None,
    ax=None,
    alpha: float = 0.4,
    colors: Mapping[str, object] | None = None,
    legend: bool = True,
    title: str | None = None,
):
    """Masks (filled) and instances (outlined) on an image, one colour per name.

    Parameters
    ----------
    image : numpy.ndarray or None
        ``(H, W, 3)`` uint8 RGB (None: a white canvas).
    masks : mapping of str to numpy.ndarray, optional
        Name (e.g. prompt) → ``(H, W)`` bool mask, filled with ``alpha``.
    instances : mapping of str to numpy.ndarray, optional
        Name → ``(H, W)`` int label image; each object is outlined in the name's colour.
    ax : matplotlib.axes.Axes, optional
    alpha : float
        Opacity of the filled masks.
    colors : mapping, optional
        Name → colour (matplotlib colour or ``(r, g, b)`` 0–255); default :func:`xpath.io.class_colour`,
        the colour a name has everywhere (``Segmentation.plot``, the QuPath GeoJSON).
    legend : bool
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.patches import Patch

    masks = dict(masks or {})
    instances = dict(instances or {})
    shape = next(iter([*masks.values(), *instances.values()]), None)
    rgb = _base(image, None if shape is None else shape.shape)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    names = list(dict.fromkeys([*masks, *instances]))
    handles = []
    for name in names:
        colour = _colour(name, colors)
        if name in masks:
            m = np.asarray(masks[name], bool)
            if m.shape != rgb.shape[:2]:
                raise ValueError(f"mask {name!r} has shape {m.shape}, the image {rgb.shape[:2]}")
            rgb[m] = (1 - alpha) * rgb[m] + alpha * colour
        if name in instances:
            lab = np.asarray(instances[name])
            if lab.shape != rgb.shape[:2]:
                raise ValueError(f"instances {name!r} have shape {lab.shape}, the image {rgb.shape[:2]}")
            rgb[_outlines(lab)] = colour
        handles.append(Patch(color=colour, label=name))
    ax = _axes(ax, rgb.shape)
    ax.imshow(np.clip(rgb, 0, 1))
    ax.set_axis_off()
    if legend and handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    if title:
        ax.set_title(title)
    return ax


def plot_instances(
    image: np.ndarray | None,
    labels: np.ndarray,
    values=None,
    *,
    ax=None,
    cmap: str = "coolwarm",
    alpha: float = 0.7,
    center: float | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    label: str | None = None,
    categorical_colors: Mapping[str, object] | None = None,
    outline: bool = True,
):
    """Colour every object by a per-object value (a feature, a SHAP value) or by its class.

    Parameters
    ----------
    image : numpy.ndarray or None
        ``(H, W, 3)`` uint8 RGB under the objects.
    labels : numpy.ndarray
        ``(H, W)`` int label image.
    values : pandas.Series or mapping, optional
        Per object id: numbers (coloured through ``cmap``) or class names (one colour per
        class, with a legend). Objects without a value stay uncoloured (outlined).
    cmap : str
        Colour map for numeric values.
    center : float, optional
        Centre the colour scale on this value (e.g. 0 for SHAP values).
    vmin, vmax : float, optional
        Fixed ends of the colour scale (default: the range of the values), so that several
        panels share one scale.
    colorbar : bool
    label : str, optional
        Colour-bar label.
    categorical_colors : mapping, optional
        Class → colour for categorical values.
    outline : bool
        Outline all objects in black.

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.patches import Patch

    from .._types import check_labels

    labels = check_labels(labels)
    rgb = _base(image, labels.shape)
    if image is not None and rgb.shape[:2] != labels.shape:
        raise ValueError(f"labels have shape {labels.shape}, the image {rgb.shape[:2]}")
    ax = _axes(ax, labels.shape)
    n = int(labels.max()) + 1
    colour_lut = np.full((n, 3), np.nan, np.float32)
    handles = []
    mappable = None
    if values is not None:
        series = pd.Series(values) if not isinstance(values, pd.Series) else values
        series = series[(series.index >= 0) & (series.index < n)] if len(series) else series
        ids = series.index.to_numpy(np.int64)
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            v = series.to_numpy(np.float64)
            finite = np.isfinite(v)
            lo, hi = (np.nanmin(v[finite]), np.nanmax(v[finite])) if finite.any() else (0.0, 1.0)
            lo = lo if vmin is None else float(vmin)
            hi = hi if vmax is None else float(vmax)
            if center is not None and vmin is not None and vmax is not None:
                norm = TwoSlopeNorm(vcenter=center, vmin=lo, vmax=hi)
            elif center is not None:
                span = max(abs(lo - center), abs(hi - center), 1e-12)
                norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
            else:
                norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-12)
            cm = plt.get_cmap(cmap)
            colour_lut[ids[finite]] = cm(norm(v[finite]))[:, :3]
            mappable = plt.cm.ScalarMappable(norm=norm, cmap=cm)
        else:
            names = series.astype(str)
            for name in sorted(names.unique()):
                colour = _colour(name, categorical_colors)
                colour_lut[ids[(names == name).to_numpy()]] = colour
                handles.append(Patch(color=colour, label=name))
    coloured = ~np.isnan(colour_lut[labels, 0]) & (labels > 0)
    rgb[coloured] = (1 - alpha) * rgb[coloured] + alpha * colour_lut[labels[coloured]]
    if outline:
        rgb[_outlines(labels)] = 0.1
    ax.imshow(np.clip(rgb, 0, 1))
    ax.set_axis_off()
    if mappable is not None and colorbar:
        ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02, label=label)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    return ax


def plot_graph(
    cells,
    graph,
    *,
    image: np.ndarray | None = None,
    mpp: float | None = None,
    ax=None,
    color_by: str | None = "class",
    edge_color: str = "0.2",
    edge_width: float = 0.5,
    node_size: float = 8.0,
    colors: Mapping[str, object] | None = None,
    legend: bool = True,
):
    """A cell graph drawn over the image: edges as one LineCollection, cells as points.

    Parameters
    ----------
    cells : pandas.DataFrame
        Cell table with ``x_um, y_um`` (and ``class`` for ``color_by``), in the graph's row order.
    graph : CellGraph
        Anything with a sparse ``connectivities`` ``(N, N)`` matrix.
    image : numpy.ndarray, optional
        Background image; with it, ``mpp`` converts µm to its pixels.
    mpp : float, optional
        µm per pixel of ``image`` (required with an image).
    color_by : str or None
        Column that colours the nodes (categorical), or None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.collections import LineCollection
    from scipy import sparse

    from .._types import check_mpp

    conn = sparse.coo_matrix(graph.connectivities)
    n = len(cells)
    if conn.shape != (n, n):
        raise ValueError(f"graph has {conn.shape[0]} cells but cells has {n} rows")
    xy = cells[["x_um", "y_um"]].to_numpy(np.float64)
    if image is not None:
        xy = xy / check_mpp(mpp, name="mpp")
        ax = _axes(ax, np.asarray(image).shape)
        ax.imshow(_base(image))
    else:
        ax = _axes(ax, (max(np.ptp(xy[:, 1]), 1), max(np.ptp(xy[:, 0]), 1)) if n else (1, 1))
        ax.set_aspect("equal")
        ax.invert_yaxis()
    upper = conn.row < conn.col
    segments = np.stack([xy[conn.row[upper]], xy[conn.col[upper]]], axis=1)
    ax.add_collection(LineCollection(segments, colors=edge_color, linewidths=edge_width, alpha=0.8))
    if color_by is not None and color_by in cells.columns and n:
        from matplotlib.patches import Patch

        names = cells[color_by].astype(str).to_numpy()
        handles = []
        for name in sorted(set(names)):
            colour = _colour(name, colors)
            sel = names == name
            ax.scatter(xy[sel, 0], xy[sel, 1], s=node_size, color=colour, zorder=3, linewidths=0)
            handles.append(Patch(color=colour, label=name))
        if legend:
            ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    elif n:
        ax.scatter(xy[:, 0], xy[:, 1], s=node_size, color="k", zorder=3, linewidths=0)
    if image is None and n:
        ax.set_xlim(xy[:, 0].min() - 5, xy[:, 0].max() + 5)
        ax.set_ylim(xy[:, 1].max() + 5, xy[:, 1].min() - 5)
        ax.set_xlabel("x (µm)")
        ax.set_ylabel("y (µm)")
    else:
        ax.set_axis_off()
    return ax
