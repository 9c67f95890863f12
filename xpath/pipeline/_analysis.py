"""One image, end to end: segmentation → cell table → graph → spatial statistics → one feature row."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._types import Image, check_image, check_mpp
from ..ontology import load_vocabulary
from ..segmentation import check_prompts
from ..segmentation.inference.stitching import merge_objects

__all__ = ["Analysis", "analyze", "combine_instances"]

log = logging.getLogger(__name__)

GRAPHS = ("delaunay", "knn", "radius")
_IMMUNE_WORDS = load_vocabulary().stems("inflammatory")
_TUMOUR_WORDS = load_vocabulary().stems("tumor") + load_vocabulary().stems("epithelial")
_STROMA_WORDS = load_vocabulary().stems("stroma")


_ANSWERED = ("supported", "unchecked")  # statuses whose masks are the model's own answer to the prompt


def prompt_status(segmentation) -> dict[str, str]:
    """Prompt → support status of a segmentation (``"unchecked"`` for results that record none)."""
    classes = getattr(segmentation, "classes", None)
    if classes is None or "status" not in getattr(classes, "columns", ()):
        return {p: "unchecked" for p in segmentation.semantic}
    return dict(zip(classes["prompt"], classes["status"]))


def _find_class(names: Sequence[str], words: Sequence[str], default: str) -> str:
    for name in names:
        if any(w in str(name).lower() for w in words):
            return str(name)
    return default


def combine_instances(
    instances: Mapping[str, np.ndarray], *, min_free: float = 0.5
) -> tuple[np.ndarray, pd.Series]:
    """Merge per-prompt instance maps into one label image and a class per object.

    Prompts are taken in order: an object of a later prompt fills only pixels no earlier
    object holds, and is dropped if less than ``min_free`` of it is free (it is the same
    nucleus seen by two prompts; the rule of
    :func:`~xpath.segmentation.inference.stitching.merge_objects`). Give specific prompts
    ("lymphocytes") before generic ones ("nuclei") so that the specific class wins.

    Returns
    -------
    labels : numpy.ndarray
        ``(H, W)`` int32, ids ``1..N``.
    classes : pandas.Series
        Class (the prompt) of each id.

    Examples
    --------
    >>> a = np.zeros((4, 6), np.int32); a[1:3, 0:2] = 1
    >>> b = np.zeros((4, 6), np.int32); b[1:3, 0:2] = 5; b[1:3, 4:6] = 6
    >>> lab, cls = combine_instances({"lymphocytes": a, "nuclei": b})
    >>> cls.to_dict()
    {1: 'lymphocytes', 2: 'nuclei'}
    """
    out = None
    names: list[str] = []
    next_id = 1
    for prompt, lab in instances.items():
        lab = np.asarray(lab, np.int32)
        if out is None:
            out = np.zeros(lab.shape, np.int32)
        if lab.shape != out.shape:
            raise ValueError(f"instances of {prompt!r} have shape {lab.shape}, expected {out.shape}")
        _, n_kept = merge_objects(out, lab, first_id=next_id, min_free=min_free)
        next_id += n_kept
        names.extend([prompt] * n_kept)
    if out is None:
        raise ValueError("instances is empty: no prompt produced an instance map")
    return out, pd.Series(names, index=pd.RangeIndex(1, next_id), dtype=object, name="class")


@dataclass
class Analysis:
    """Every intermediate of :func:`analyze` for one image.

    Attributes
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.
    mpp : float
    prompts : tuple of str
    segmentation : object
        The segmentation result (:class:`xpath.segmentation.Segmentation`).
    labels : numpy.ndarray
        ``(H, W)`` int32: all instance prompts merged (see :func:`combine_instances`).
    regions : numpy.ndarray
        ``(H, W)`` int32 tissue-region map from the tissue-level prompts (0 = none);
        ``region_names`` maps values to prompts.
    cells : pandas.DataFrame
        Cell table (:func:`xpath.biomarkers.cell_table`) joined with per-cell spatial
        statistics (``cell.spatial.*``); ``class`` is the prompt (or its alias in ``classes``).
    graph : xpath.biomarkers.CellGraph
    spatial : pandas.Series
        Per-image spatial statistics (:func:`xpath.biomarkers.image_spatial_features`).
    features : pandas.DataFrame
        One row (index: ``name``) of counts, densities, per-object feature distributions,
        region measures and spatial statistics, with stable column names.
    origin : (int, int)
        Level-0 slide position of the image's top-left pixel (for GeoJSON).
    name : str
    """

    image: np.ndarray = field(repr=False)
    mpp: float
    prompts: tuple[str, ...]
    segmentation: Any = field(repr=False)
    labels: np.ndarray = field(repr=False)
    regions: np.ndarray = field(repr=False)
    region_names: dict[int, str]
    cells: pd.DataFrame = field(repr=False)
    graph: Any = field(repr=False)
    spatial: pd.Series = field(repr=False)
    features: pd.DataFrame = field(repr=False)
    origin: tuple[int, int] = (0, 0)
    name: str = "image"

    def __repr__(self) -> str:
        counts = self.cells["class"].value_counts().to_dict() if len(self.cells) else {}
        return (f"Analysis(name={self.name!r}, shape={self.image.shape[:2]}, mpp={self.mpp}, "
                f"prompts={list(self.prompts)}, cells={counts}, features={self.features.shape[1]})")

    def plot(self, ax=None, *, kind: str = "overlay", value: str | None = None, **kwargs):
        """Plot the analysis on the image; returns the Axes.

        Parameters
        ----------
        kind : {"overlay", "cells", "graph"}
            ``"overlay"``: semantic masks filled and instances outlined, coloured by prompt.
            ``"cells"``: objects coloured by class, or by the cell-table column ``value``.
            ``"graph"``: the cell graph over the image.
        value : str, optional
            Cell-table column for ``kind="cells"`` (e.g. ``"nucleus.shape.area_um2"``).
        **kwargs
            Passed to :func:`~xpath.plotting.plot_overlay`, ``plot_instances`` or ``plot_graph``.
        """
        from ..plotting import plot_graph, plot_instances, plot_overlay

        if kind == "overlay":
            seg = self.segmentation
            masks = {p: seg.semantic[p] for p in self.prompts if p not in seg.instances}
            inst = {p: seg.instances[p] for p in self.prompts if p in seg.instances}
            return plot_overlay(self.image, masks, instances=inst, ax=ax, **kwargs)
        if kind == "cells":
            column = value or "class"
            if column not in self.cells.columns:
                raise ValueError(f"value must be a column of the cell table, got {column!r}")
            return plot_instances(self.image, self.labels, self.cells.set_index("id")[column], ax=ax,
                                  label=None if column == "class" else column, **kwargs)
        if kind == "graph":
            return plot_graph(self.cells, self.graph, image=self.image, mpp=self.mpp, ax=ax, **kwargs)
        raise ValueError(f"kind must be 'overlay', 'cells' or 'graph', got {kind!r}")

    def to_geojson(self, path: str | os.PathLike, *, object_type: str = "detection",
                   measurements: bool = True) -> Path:
        """Write regions (annotations) and cells (detections with measurements) as QuPath GeoJSON."""
        from ..io import GeoJSONWriter

        with GeoJSONWriter(path, image_name=self.name, metadata={"prompts": self.prompt_records()}) as writer:
            for value, name in self.region_names.items():
                writer.add_mask(self.regions == value, name, origin=self.origin)
            table = self.cells if measurements else self.cells[["id", "class"]]
            writer.add_labels(self.labels, object_type=object_type, measurements=table, origin=self.origin)
        return Path(path)

    def prompt_records(self) -> list[dict]:
        """Per prompt: the label it resolved to and its support status (from the segmentation's class table)."""
        classes = getattr(self.segmentation, "classes", None)
        status = prompt_status(self.segmentation)
        labels = dict(zip(classes["prompt"], classes["label"])) if classes is not None and "label" in classes else {}
        return [{"prompt": p, "label": None if pd.isna(labels.get(p)) else labels.get(p),
                 "status": status.get(p, "unchecked")} for p in self.prompts]

    def to_parquet(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``cells.parquet`` (one row per object) and ``features.parquet`` (one row) into ``folder``.

        Both files' metadata hold ``prompt_support``: JSON of :meth:`prompt_records` (each prompt's
        resolved label and support status).
        """
        import json

        from ..io import write_parquet

        folder = Path(folder)
        meta = {"mpp": self.mpp, "name": self.name, "prompts": "|".join(self.prompts),
                "prompt_support": json.dumps(self.prompt_records())}
        cells = self.cells.copy()
        cells.insert(0, "image", self.name)
        return {"cells": write_parquet(cells, folder / "cells.parquet", metadata=meta),
                "features": write_parquet(self.features.reset_index(), folder / "features.parquet", metadata=meta)}

    def to_anndata(self):
        """The cell table and graph as ``anndata.AnnData`` (squidpy keys); needs anndata."""
        from ..io import to_anndata

        return to_anndata(self.cells, graph=self.graph)


def _build_graph(cells: pd.DataFrame, graph: str, graph_params: Mapping | None):
    from .. import biomarkers

    params = dict(graph_params or {})
    if graph == "delaunay":
        return biomarkers.build_graph_delaunay(cells, **params)
    if graph == "knn":
        return biomarkers.build_graph_knn(cells, **params)
    if graph == "radius":
        params.setdefault("radius_um", 30.0)
        return biomarkers.build_graph_radius(cells, **params)
    raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")


def analyze(
    image,
    prompts: Sequence[str],
    *,
    model: Any = "xpath_small",
    mpp: float | None = None,
    segmentation: Any = None,
    classes: Mapping[str, str] | None = None,
    graph: str = "delaunay",
    graph_params: Mapping | None = None,
    properties: Sequence[str] | None = None,
    n_perms: int = 200,
    seed: int = 0,
    stats: Sequence[str] = ("mean", "std", "q10", "q50", "q90"),
    threshold: float = 0.5,
    device: Any = None,
    name: str | None = None,
    progress: bool = False,
    on_unsupported: str = "raise",
    precision: str = "float32",
    test_time_flips: bool = False,
) -> Analysis:
    """Analyse one image end to end: text-prompted segmentation → biomarkers → one feature row.

    Parameters
    ----------
    image : numpy.ndarray, xpath.Image or path
        ``(H, W, 3)`` uint8 RGB (an :class:`xpath.Image` brings its ``mpp`` and ``origin``).
    prompts : sequence of str
        What to find, e.g. ``["tumour nuclei", "lymphocytes", "stroma"]``. Nuclei/cell
        prompts give objects (rows of the cell table, class = prompt); tissue prompts give
        regions (areas, tumour–stroma ratio, distances of cells to region borders).
    model : str, path or model
        Segmentation model (:func:`xpath.segmentation.segment`), unless ``segmentation`` is given.
    mpp : float, optional
        µm per pixel (required unless the image carries it).
    segmentation : Segmentation, optional
        A result computed before (anything with ``semantic``, ``instances``, ``presence``
        dicts keyed by prompt); skips the model.
    classes : mapping, optional
        Prompt → class name in the tables (e.g. ``{"tumour nuclei": "tumour"}``).
    graph : {"delaunay", "knn", "radius"}
        Cell graph; ``graph_params`` are passed to its builder (``k=``, ``radius_um=``,
        ``max_edge_um=``).
    properties : sequence of str, optional
        Cell-table feature families (default: all that the image allows).
    n_perms, seed : int
        Permutations and seed of the neighbourhood-enrichment test.
    stats : sequence of str
        Distribution statistics of per-object features in the feature row.
    threshold, device, progress, precision, test_time_flips
        Passed to the segmentation (:func:`xpath.segmentation.segment`).
    name : str, optional
        Image name (index of the feature row, GeoJSON ids); default the file name.
    on_unsupported : {"raise", "empty", "nearest"}
        Prompts the model was not trained for (:func:`xpath.segmentation.supported_prompts`):
        refused before the image is read or segmented (default), answered empty, or answered
        with the nearest supported label. Only prompts the model supports give regions and
        region features (tumour–stroma ratio, per-region densities): an empty or substituted
        answer never does.

    Returns
    -------
    Analysis
    """
    from .. import biomarkers
    from ..segmentation.support import check_on_unsupported, require_supported

    prompts = check_prompts(prompts)
    if segmentation is None and check_on_unsupported(on_unsupported) == "raise":
        require_supported(prompts, model)
    if isinstance(image, (str, os.PathLike)):
        from ..io import read_image

        image = read_image(image, mpp=mpp)
    origin = tuple(getattr(image, "origin", (0, 0)))
    if mpp is None and isinstance(image, Image):
        mpp = image.mpp
    mpp = check_mpp(mpp)
    if name is None:
        name = Path(image.path).name.split(".")[0] if isinstance(image, Image) and image.path else "image"
    array = check_image(image)
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if segmentation is None:
        from ..segmentation import segment

        segmentation = segment(array, prompts, model=model, mpp=mpp, threshold=threshold, device=device,
                               progress=progress, on_unsupported=on_unsupported, precision=precision,
                               test_time_flips=test_time_flips)
    missing = [p for p in prompts if p not in segmentation.semantic]
    if missing:
        raise ValueError(f"segmentation has no result for prompts {missing}")
    alias = {p: (classes or {}).get(p, p) for p in prompts}

    inst_prompts = [p for p in prompts if p in segmentation.instances]
    if inst_prompts:
        labels, cls = combine_instances({p: segmentation.instances[p] for p in inst_prompts})
    else:
        labels, cls = np.zeros(array.shape[:2], np.int32), pd.Series([], dtype=object)
    cls = cls.map(alias)
    status = prompt_status(segmentation)
    region_prompts = [p for p in prompts if p not in segmentation.instances and status.get(p) in _ANSWERED]
    regions = np.zeros(array.shape[:2], np.int32)
    region_names = {}
    for k, p in enumerate(region_prompts, start=1):
        regions[np.asarray(segmentation.semantic[p], bool) & (regions == 0)] = k
        region_names[k] = alias[p]

    kw = {} if properties is None else {"properties": tuple(properties)}
    cells = biomarkers.cell_table(labels, array, mpp=mpp, classes=cls, **kw)
    class_names = [str(c) for c in pd.unique(cls)] if len(cls) else []
    immune = _find_class(class_names, _IMMUNE_WORDS, "lymphocyte")
    tumour = _find_class(class_names, _TUMOUR_WORDS, "tumour")
    if len(cells) >= 3:
        g = _build_graph(cells, graph, graph_params)
        per_cell = biomarkers.cell_spatial_stats(cells, g, regions=regions if region_names else None,
                                                 region_names=region_names or None, mpp=mpp)
        cells = pd.concat([cells, per_cell], axis=1)
        spatial = biomarkers.image_spatial_features(cells, g, n_perms=n_perms, seed=seed, immune_class=immune,
                                                    tumour_class=tumour)
    else:
        g = None
        spatial = pd.Series(dtype=np.float64)
        log.warning("%s: %d objects; the graph and spatial statistics need at least 3", name, len(cells))

    table = cells.assign(image=name)
    tissue_px = int((regions > 0).sum()) if region_names else array.shape[0] * array.shape[1]
    area_mm2 = pd.Series({name: tissue_px * (mpp / 1000.0) ** 2})
    extra = pd.DataFrame([spatial.to_dict()], index=pd.Index([name], name="image")) if len(spatial) else None
    features = biomarkers.aggregate(table, "image", stats=stats, area_mm2=area_mm2, extra=extra)
    if region_names:
        region_row = biomarkers.region_table(regions, mpp=mpp, region_names={0: "none", **region_names},
                                             cells=cells,
                                             tumour=_find_class(list(region_names.values()), _TUMOUR_WORDS, "tumour"),
                                             stroma=_find_class(list(region_names.values()), _STROMA_WORDS, "stroma"))
        features = features.join(pd.DataFrame([region_row], index=features.index))
    presence = {f"presence.{alias[p]}": float(segmentation.presence.get(p, np.nan)) for p in prompts}
    features = features.join(pd.DataFrame([presence], index=features.index))
    return Analysis(image=array, mpp=mpp, prompts=tuple(prompts), segmentation=segmentation, labels=labels,
                    regions=regions, region_names=region_names, cells=cells, graph=g, spatial=spatial,
                    features=features, origin=(int(origin[0]), int(origin[1])), name=name)
