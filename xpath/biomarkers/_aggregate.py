"""Aggregation of per-object tables to one row per image / slide / patient, and per-image spatial features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._graph import CellGraph, build_graph_delaunay
from ._image_stats import (
    graph_statistics,
    immune_proximity,
    morisita_horn,
    neighbourhood_enrichment,
    ripley,
)

__all__ = ["AGGREGATE_STATS", "aggregate", "image_spatial_features"]

AGGREGATE_STATS = ("mean", "std", "min", "max", "median", "q10", "q25", "q50", "q75", "q90", "iqr")
_NON_FEATURES = ("id", "x_px", "y_px", "x_um", "y_um", "class")


def _stat_funcs(stats: Sequence[str]) -> list:
    unknown = [s for s in stats if s not in AGGREGATE_STATS]
    if unknown:
        raise ValueError(f"stats has unknown name(s) {unknown}; known: {AGGREGATE_STATS}")
    return list(stats)


def _describe(g, stats):
    """One frame of ``{feature}.{stat}`` columns, one row per group (grouped numeric frame ``g``)."""
    parts = {}
    for s in stats:
        if s in ("mean", "std", "min", "max", "median"):
            v = getattr(g, s)()
        elif s == "iqr":
            v = g.quantile(0.75) - g.quantile(0.25)
        else:
            v = g.quantile(int(s[1:]) / 100.0)
        parts[s] = v
    frames = [v.add_suffix(f".{s}") for s, v in parts.items()]
    out = pd.concat(frames, axis=1)
    order = [f"{c}.{s}" for c in parts[stats[0]].columns for s in stats]
    return out[order]


def aggregate(
    cell_table: pd.DataFrame,
    by: str | Sequence[str] = ("image",),
    *,
    stats: Sequence[str] = ("mean", "std", "q10", "q50", "q90"),
    per_class: bool = True,
    area_mm2: Mapping | pd.Series | None = None,
    extra: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per group (image, slide, patient...) of distribution statistics of every per-object feature.

    Parameters
    ----------
    cell_table : pandas.DataFrame
        Concatenated cell tables with the grouping columns (e.g. ``image``, ``patient``).
    by : str or sequence of str
        Grouping columns.
    stats : sequence of str
        From ``AGGREGATE_STATS``; ``qNN`` is the NN-th percentile.
    per_class : bool
        Also compute every statistic per class (columns ``{class}:{feature}.{stat}``).
    area_mm2 : mapping or pandas.Series, optional
        Analysed area per group (indexed like the groups) for densities
        ``density_per_mm2`` and ``density_per_mm2.{class}`` (NaN where the area is 0).
    extra : pandas.DataFrame, optional
        Per-group features (e.g. rows of :func:`image_spatial_features`) indexed like the
        groups; joined as they are.

    Returns
    -------
    pandas.DataFrame
        Indexed by the group keys; columns ``count``, ``count.{class}``, ``fraction.{class}``,
        ``{feature}.{stat}`` and per class ``{class}:{feature}.{stat}``.

    Examples
    --------
    >>> t = pd.DataFrame({"image": ["a", "a", "b"], "class": ["x", "y", "x"], "nucleus.shape.area_um2": [1.0, 3.0, 5.0]})
    >>> aggregate(t, "image", stats=("mean",), per_class=False)["nucleus.shape.area_um2.mean"].tolist()
    [2.0, 5.0]
    """
    by = [by] if isinstance(by, str) else list(by)
    missing = [b for b in by if b not in cell_table.columns]
    if missing:
        raise ValueError(f"by names column(s) {missing} that cell_table does not have")
    stats = _stat_funcs(stats)
    feats = [c for c in cell_table.columns if c not in by and c not in _NON_FEATURES
             and pd.api.types.is_numeric_dtype(cell_table[c]) and not pd.api.types.is_bool_dtype(cell_table[c])]
    num = cell_table[by + feats]
    grouped = num.groupby(by, sort=True, observed=True)
    out = pd.DataFrame({"count": grouped.size()})
    has_class = "class" in cell_table.columns and cell_table["class"].notna().any()
    classes = []
    if has_class:
        cls = cell_table["class"].astype(str).where(cell_table["class"].notna())
        classes = sorted(cls.dropna().unique())
        counts = cell_table.assign(_cls=cls).groupby(by + ["_cls"], observed=True).size().unstack("_cls")
        counts = counts.reindex(columns=classes).fillna(0).reindex(out.index).fillna(0)
        for c in classes:
            out[f"count.{c}"] = counts[c].astype(np.int64)
            out[f"fraction.{c}"] = counts[c] / out["count"]
    if area_mm2 is not None:
        area = pd.Series(area_mm2).reindex(out.index).astype(float)
        area = area.where(area > 0)  # no analysed area (e.g. a region prompt that found nothing): density undefined
        out["density_per_mm2"] = out["count"] / area
        for c in classes:
            out[f"density_per_mm2.{c}"] = out[f"count.{c}"] / area
    if feats:
        out = out.join(_describe(grouped[feats], stats))
        if per_class and has_class:
            for c in classes:
                sub = num[(cls == c).to_numpy()].groupby(by, sort=True, observed=True)[feats]
                out = out.join(_describe(sub, stats).add_prefix(f"{c}:"))
    if extra is not None:
        out = out.join(extra)
    return out


def image_spatial_features(
    cells: pd.DataFrame,
    graph: CellGraph | None = None,
    *,
    n_perms: int = 200,
    seed: int = 0,
    ripley_radii_um: Sequence[float] = (25.0, 50.0),
    quadrat_um: float = 100.0,
    proximity_um: float = 20.0,
    immune_class: str = "lymphocyte",
    tumour_class: str = "tumour",
    window_um: Any = None,
) -> pd.Series:
    """Per-image spatial statistics flattened into one Series with stable names.

    Names: ``image.spatial.enrichment_z.{a}__{b}``, ``image.spatial.morisita_horn.{a}__{b}``,
    ``image.spatial.ripley_l_um.{class}.r{r}``, ``image.spatial.immune_within_{d}um_of_tumour``,
    ``image.spatial.{delaunay_edge_um|delaunay_triangle_area_um2|voronoi_area_um2|mst_edge_um}_{stat}``.
    The graph defaults to the Delaunay graph of ``cells``.
    """
    graph = build_graph_delaunay(cells) if graph is None else graph
    pre = "image.spatial."
    out: dict[str, float] = {}
    if "class" in cells.columns and cells["class"].notna().any():
        z = neighbourhood_enrichment(graph, cells, n_perms=n_perms, seed=seed)["zscore"]
        mh = morisita_horn(cells, quadrat_um=quadrat_um)
        for a in z.index:
            for b in z.columns:
                out[f"{pre}enrichment_z.{a}__{b}"] = float(z.loc[a, b])
                out[f"{pre}morisita_horn.{a}__{b}"] = float(mh.loc[a, b])
        rk = ripley(cells, ripley_radii_um, window_um=window_um)
        for row in rk.itertuples(index=False):  # a few classes x radii
            out[f"{pre}ripley_l_um.{row[0]}.r{row[1]:g}"] = float(row[3])
        out[f"{pre}immune_within_{proximity_um:g}um_of_tumour"] = immune_proximity(
            cells, distance_um=proximity_um, immune_class=immune_class, tumour_class=tumour_class)
    for k, v in graph_statistics(cells).items():
        out[pre + k] = v
    return pd.Series(out, dtype=np.float64)
