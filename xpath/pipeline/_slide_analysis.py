"""A whole slide end to end: tiled segmentation → streamed cell table → slide graph → one feature row."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._analysis import _IMMUNE_WORDS, _TUMOUR_WORDS, _build_graph, _find_class
from ._slide import SlideResult, segment_slide

__all__ = ["SlideAnalysis", "analyze_slide"]


@dataclass
class SlideAnalysis:
    """Result of :func:`analyze_slide`.

    Attributes
    ----------
    name : str
    segmentation : SlideResult
        The tiled segmentation (label maps, GeoJSON and cell rows on disk).
    cells : pandas.DataFrame
        Every object of the slide (slide coordinates) with per-cell spatial statistics.
    graph : xpath.biomarkers.CellGraph or None
    spatial : pandas.Series
        Slide-level spatial statistics.
    features : pandas.DataFrame
        One row (index: slide name).
    files : dict of str to pathlib.Path
    """

    name: str
    segmentation: SlideResult = field(repr=False)
    cells: pd.DataFrame = field(repr=False)
    graph: Any = field(repr=False)
    spatial: pd.Series = field(repr=False)
    features: pd.DataFrame = field(repr=False)
    files: dict = field(default_factory=dict)

    def plot(self, ax=None, **kwargs):
        """Cells (centroids coloured by class) over the slide's tissue mask; returns the Axes."""
        from ..plotting import plot_graph

        return plot_graph(self.cells, self.graph, ax=ax, **kwargs)


def analyze_slide(
    slide,
    prompts: Sequence[str],
    *,
    out_dir: str | os.PathLike,
    model: Any = "xpath_small",
    segmenter=None,
    mpp: float | None = None,
    classes: Mapping[str, str] | None = None,
    graph: str = "delaunay",
    graph_params: Mapping | None = None,
    properties: Sequence[str] | None = None,
    n_perms: int = 200,
    seed: int = 0,
    stats: Sequence[str] = ("mean", "std", "q10", "q50", "q90"),
    tile: int | None = None,
    overlap: int | None = None,
    device: Any = None,
    progress: bool = True,
    on_unsupported: str = "raise",
    precision: str = "float32",
    test_time_flips: bool = False,
) -> SlideAnalysis:
    """Analyse a whole slide: :func:`segment_slide` with a streamed cell table, then slide-level biomarkers.

    Parameters are those of :func:`segment_slide` and :func:`analyze`. Writes, in
    ``out_dir``: the masks OME-TIFF, the GeoJSON, ``{name}.cells.parquet`` (with the
    per-cell spatial statistics) and ``{name}.features.parquet`` (one row).

    Returns
    -------
    SlideAnalysis
    """
    from .. import biomarkers
    from ..io import write_parquet

    kw = {} if properties is None else {"properties": tuple(properties)}

    def measure(labels, image, *, mpp, ids):
        return biomarkers.cell_table(labels, image, mpp=mpp, **kw)

    res = segment_slide(slide, prompts, out_dir=out_dir, model=model, segmenter=segmenter, measure=measure,
                        mpp=mpp, tile=tile, overlap=overlap, device=device, progress=progress,
                        on_unsupported=on_unsupported, precision=precision, test_time_flips=test_time_flips)
    alias = {p: (classes or {}).get(p, p) for p in res.prompts}
    cells = res.cells()
    if len(cells):
        cells["class"] = pd.Categorical(cells.pop("prompt").map(alias))
        cells = cells.reset_index(drop=True)
    names = [str(c) for c in cells["class"].cat.categories] if len(cells) else []
    immune = _find_class(names, _IMMUNE_WORDS, "lymphocyte")
    tumour = _find_class(names, _TUMOUR_WORDS, "tumour")
    g = None
    spatial = pd.Series(dtype=np.float64)
    if len(cells) >= 3:
        g = _build_graph(cells, graph, graph_params)
        cells = pd.concat([cells, biomarkers.cell_spatial_stats(cells, g)], axis=1)
        spatial = biomarkers.image_spatial_features(cells, g, n_perms=n_perms, seed=seed, immune_class=immune,
                                                    tumour_class=tumour)
    tissue_mm2 = float(res.tissue.sum()) * (res.tissue_downsample * res.mpp / res.downsample / 1000.0) ** 2
    extra = pd.DataFrame([spatial.to_dict()], index=pd.Index([res.name], name="image")) if len(spatial) else None
    table = cells.assign(image=res.name) if len(cells) else pd.DataFrame({"image": pd.Series([], dtype=str)})
    features = biomarkers.aggregate(table, "image", stats=stats, area_mm2=pd.Series({res.name: tissue_mm2}),
                                    extra=extra) if len(cells) else pd.DataFrame(index=pd.Index([res.name]))
    features["image.tissue.area_mm2"] = tissue_mm2
    for p in res.prompts:
        features[f"presence.{alias[p]}"] = res.presence.get(p, np.nan)
    out_dir = Path(out_dir)
    files = dict(res.files)
    if len(cells):
        files["cells"] = write_parquet(cells, out_dir / f"{res.name}.cells.parquet", metadata={"mpp": res.mpp})
    files["features"] = write_parquet(features.reset_index(names="image"), out_dir / f"{res.name}.features.parquet",
                                      metadata={"prompt_support": _prompt_support(res.prompts, model, segmenter,
                                                                                  on_unsupported)})
    return SlideAnalysis(name=res.name, segmentation=res, cells=cells, graph=g, spatial=spatial,
                         features=features, files=files)


def _prompt_support(prompts, model, segmenter, on_unsupported: str) -> str:
    """JSON of each prompt's resolved label and support status, for the feature table's metadata."""
    import json

    from ..segmentation.support import check_prompt_support

    if segmenter is not None:  # a custom segmenter answers for itself
        return json.dumps([{"prompt": p, "label": None, "status": "unchecked"} for p in prompts])
    records = []
    for s in check_prompt_support(list(prompts), model):
        near = s.nearest[0].prompt if s.nearest and on_unsupported == "nearest" and not s.supported else None
        status = s.status if s.supported else ("nearest" if near else "unsupported")
        records.append({"prompt": s.prompt, "label": s.label.prompt if s.label else near, "status": status})
    return json.dumps(records)
