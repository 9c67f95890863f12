"""Quantitative biomarkers from segmentations: per-object morphology, stain intensity and
texture; sparse cell graphs; per-cell and per-image spatial statistics; aggregation.

Everything is vectorised over objects (``numpy``/``scipy`` reductions or numba kernels) and
works without torch (only :meth:`CellGraph.to_pyg` imports it).
"""

from ._aggregate import AGGREGATE_STATS, aggregate, image_spatial_features
from ._catalog import feature_catalog
from ._graph import CellGraph, build_graph_delaunay, build_graph_knn, build_graph_radius
from ._image_stats import (
    co_occurrence,
    graph_statistics,
    immune_proximity,
    morisita_horn,
    neighbourhood_enrichment,
    region_table,
    ripley,
    til_density,
)
from ._spatial import cell_spatial_stats, clustering_coefficient, signed_region_distance
from ._table import DEFAULT_PROPERTIES, PROPERTY_FAMILIES, cell_table

__all__ = [
    "AGGREGATE_STATS",
    "DEFAULT_PROPERTIES",
    "PROPERTY_FAMILIES",
    "CellGraph",
    "MorphologyFeaturizer",
    "aggregate",
    "build_graph_delaunay",
    "build_graph_knn",
    "build_graph_radius",
    "cell_spatial_stats",
    "cell_table",
    "clustering_coefficient",
    "co_occurrence",
    "feature_catalog",
    "graph_statistics",
    "image_spatial_features",
    "immune_proximity",
    "morisita_horn",
    "neighbourhood_enrichment",
    "region_table",
    "ripley",
    "signed_region_distance",
    "til_density",
]


def __getattr__(name: str):
    # scikit-learn takes seconds to import: load the transformer only when it is asked for.
    if name == "MorphologyFeaturizer":
        from ._featurizer import MorphologyFeaturizer

        return MorphologyFeaturizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
