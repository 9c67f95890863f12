"""The model's path through a whole slide: one tile grid over the tissue, read ahead, stitched once.

:func:`segment_slide` with the text-prompted model (no custom ``segmenter``) covers the
slide with the model's own tile grid at the working resolution
(:func:`xpath.segmentation.inference.tiling.tile_starts`) and runs only the tiles that touch tissue
in the thumbnail's tissue mask, each encoded once: no windows, so no halos or window
seams are encoded twice, and batches run across the whole panel. Tiles are read by a
background thread while the model computes (:class:`SlideSource`). The blended maps
stream into memory-mapped label maps and the block-wise watershed of
:class:`~xpath.segmentation.inference.stitching.InstanceStitcher` labels every object once, whole (ids
``1..N`` per prompt). Nucleus-type prompts have no watershed of their own: they split the
all-nuclei map (a hidden all-nuclei prompt's when "nuclei" is not asked), each nucleus to
the type its pixels vote for, ids kept, as ``predict()`` on the whole image does. A second
pass over windows of the finished label maps measures and writes each object once (the
window whose core holds its centroid); a nucleus and its type are traced and measured once.

Pixels are registered exactly: work pixel ``(r, c)`` covers level-0 pixels
``[c·d, (c+1)·d) × [r·d, (r+1)·d)`` (``d`` = level-0 pixels per work pixel) wherever it is
read, so tiles read apart agree where they overlap.
"""

from __future__ import annotations

import math

import numpy as np

from ..segmentation.inference.stitching import core_ids
from ..segmentation.inference.tiling import prefetch, tile_cores, tile_starts

__all__ = ["SlideSource", "tissue_tiles"]


class SlideSource:
    """A slide seen at a working resolution, read on demand (the tile source of ``predict_tiled``).

    Parameters
    ----------
    slide : slide-like
        ``read_at_mpp``, ``mpp`` and ``dimensions`` (:class:`xpath.io.Slide`, :class:`ArraySlide`).
    mpp : float
        Working resolution (µm/px).
    """

    def __init__(self, slide, *, mpp: float) -> None:
        self.slide, self.mpp = slide, float(mpp)
        self.downsample = self.mpp / float(slide.mpp)  # level-0 px per work px
        w0, h0 = slide.dimensions
        self.shape = (math.ceil(h0 / self.downsample), math.ceil(w0 / self.downsample), 3)
        self.pixels_read = 0  # level-0 pixels decoded so far

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """``(h, w, 3)`` uint8 work pixels at ``(y, x)`` (white beyond the slide)."""
        d = self.downsample
        if abs(d - 1.0) < 1e-9:
            return np.asarray(self.slide.read_at_mpp((x, y), (w, h), mpp=self.slide.mpp).array)
        from PIL import Image as PILImage

        pad = 2  # level-0 context for the filter at the crop's edges
        fx0, fy0 = math.floor(x * d) - pad, math.floor(y * d) - pad
        fx1, fy1 = math.ceil((x + w) * d) + pad, math.ceil((y + h) * d) + pad
        level0 = np.asarray(self.slide.read_at_mpp((fx0, fy0), (fx1 - fx0, fy1 - fy0), mpp=self.slide.mpp).array)
        self.pixels_read += level0.shape[0] * level0.shape[1]
        box = (x * d - fx0, y * d - fy0, (x + w) * d - fx0, (y + h) * d - fy0)
        resample = PILImage.Resampling.BILINEAR if d < 1 else PILImage.Resampling.BOX
        return np.asarray(PILImage.fromarray(level0).resize((w, h), resample, box=box))

    def tiles(self, origins, tile: int) -> np.ndarray:
        """``(B, tile, tile, 3)`` tiles at ``(y, x)`` origins; one read per row of tiles."""
        out = np.empty((len(origins), tile, tile, 3), np.uint8)
        for y in sorted({y for y, _ in origins}):
            idx = [i for i, (yy, _) in enumerate(origins) if yy == y]
            x0 = min(origins[i][1] for i in idx)
            strip = self.read(y, x0, tile, max(origins[i][1] for i in idx) + tile - x0)
            for i in idx:
                out[i] = strip[:, origins[i][1] - x0: origins[i][1] - x0 + tile]
        return out


def tissue_tiles(tissue: np.ndarray, t_down: float, downsample: float, shape, tile: int, overlap: int,
                 *, dilate: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model grid over a slide and the tissue fraction of each tile's footprint.

    Parameters
    ----------
    tissue : numpy.ndarray
        Thumbnail tissue mask; ``t_down`` level-0 pixels per mask pixel.
    downsample : float
        Level-0 pixels per work pixel; ``shape`` ``(H, W)`` in work pixels.
    dilate : int
        Mask pixels added around the tissue first (a tile that grazes the tissue edge runs).

    Returns
    -------
    ys, xs, fraction
        Tile starts (work pixels) and ``(len(ys), len(xs))`` tissue fractions; a tile is
        needed when its fraction is > 0.
    """
    from scipy import ndimage

    mask = ndimage.binary_dilation(tissue, iterations=dilate) if dilate > 0 and tissue.any() else tissue
    ys, xs = tile_starts(shape[0], tile, overlap), tile_starts(shape[1], tile, overlap)
    f = downsample / t_down  # mask pixels per work pixel
    frac = np.zeros((len(ys), len(xs)))
    for i, y in enumerate(ys):
        r0 = int(y * f)
        r1 = max(math.ceil((y + tile) * f), r0 + 1)
        for j, x in enumerate(xs):
            c0 = int(x * f)
            frac[i, j] = float(mask[r0:r1, c0:max(math.ceil((x + tile) * f), c0 + 1)].mean()) if r0 < mask.shape[0] \
                and c0 < mask.shape[1] else 0.0
    return ys, xs, frac


def to_slide_frame(table, prompt: str, x: int, y: int, mpp: float, downsample: float):
    """Per-window object rows → slide coordinates (x/y_px in level-0 pixels, x/y_um in µm)."""
    table = table.copy()
    if "x_px" in table.columns:
        table["x_px"] = (table["x_px"] + x) * downsample
        table["y_px"] = (table["y_px"] + y) * downsample
    if "x_um" in table.columns:
        table["x_um"] = table["x_um"] + x * mpp
        table["y_um"] = table["y_um"] + y * mpp
    table.insert(0, "prompt", prompt)
    return table


def run_model(src, prompts, predictor, outputs, *, tissue, t_down: float, measure, window: int,
              threshold: float, min_area_um2: float, on_unsupported: str = "raise") -> tuple[list[dict], dict, dict]:
    """Segment ``src`` with ``predictor`` over the tissue tiles into ``outputs``; ``(tile rows, presence, n_objects)``.

    ``outputs`` is the slide's output set (label stores, GeoJSON writer, cell stream) of
    :func:`~xpath.pipeline.segment_slide`; ``window`` the side of the measurement windows.
    """
    source = SlideSource(src, mpp=predictor.model_mpp)
    shape = source.shape[:2]
    ys, xs, frac = tissue_tiles(tissue, t_down, source.downsample, shape, predictor.tile, predictor.overlap)
    row_of, col_of = {int(y): i for i, y in enumerate(ys)}, {int(x): j for j, x in enumerate(xs)}
    needed = frac > 0

    def keep(y: int, x: int) -> bool:
        return bool(needed[row_of[y], col_of[x]])

    instance = set(predictor.instance_prompts(prompts, on_unsupported=on_unsupported))
    stores = {p: outputs.store(p, "instances" if p in instance else "semantic") for p in prompts}
    presence = predictor.predict_source(source, prompts, out=stores, keep=keep, threshold=threshold,
                                        min_area_um2=min_area_um2, on_unsupported=on_unsupported)
    inst = {p: stores[p] for p in prompts if p in instance}
    shared = {t: r for t, r in predictor.nucleus_type_prompts(prompts, on_unsupported=on_unsupported).items() if r}
    n_objects = write_objects(source, inst, outputs, measure=measure, window=window, margin=predictor.margin,
                              nuclei_of=shared)
    rows = [{"x": int(x), "y": int(y), "tissue_fraction": float(frac[i, j]), "processed": bool(needed[i, j]),
             "seconds": float("nan")} for i, y in enumerate(ys) for j, x in enumerate(xs)]
    return rows, presence, n_objects


def write_objects(source: SlideSource, stores: dict, outputs, *, measure, window: int, margin: int,
                  nuclei_of: dict | None = None) -> dict:
    """Measure and write every object of the label ``stores`` once, window by window; objects per prompt.

    Windows of ``window`` px overlap by ``2 · margin``; a window owns the objects whose
    centroid lies in its core and that do not touch its inner edges (objects up to
    ``margin`` px across are therefore whole in the window that owns them). ``nuclei_of``:
    type prompt → the prompt whose map its objects are objects of (same ids, same pixels: a
    nucleus type's nuclei, :meth:`~xpath.segmentation.TextPromptPredictor.nucleus_type_prompts`);
    those objects are traced and measured once, with that map, and written under both prompts.
    ``measure`` must therefore give each object's row (``id`` column) from its own pixels, as
    :func:`~xpath.biomarkers.cell_table` does.
    """
    from ..io import trace_rings

    nuclei_of = {t: r for t, r in (nuclei_of or {}).items() if t in stores and r in stores and r not in nuclei_of}
    H, W = source.shape[:2]
    window = max(int(window), 4 * margin + 1)
    wy, wx = tile_starts(H, window, 2 * margin), tile_starts(W, window, 2 * margin)
    (ay, by), (ax, bx) = tile_cores(wy, window, H), tile_cores(wx, window, W)
    n_objects = {p: 0 for p in stores}
    ds, mpp = source.downsample, source.mpp
    own_maps = [s for p, s in stores.items() if p not in nuclei_of]  # a type's objects are in its nuclei map
    jobs = [(i, j, int(y), int(x)) for i, y in enumerate(wy) for j, x in enumerate(wx)
            if any(np.asarray(s[y: y + window, x: x + window]).any() for s in own_maps)]
    # the pixels to measure on are read a window ahead, in a thread, while this one is measured
    images = prefetch(lambda job: source.read(job[2], job[3], min(window, H - job[2]), min(window, W - job[3])),
                        jobs if outputs.cells is not None else [], 1)
    try:
        for i, j, y, x in jobs:
            labs = {p: np.asarray(s[y: y + window, x: x + window]) for p, s in stores.items()}
            image = next(images) if outputs.cells is not None else None
            done: dict[str, dict] = {}  # per prompt: owned ids, their label map, outlines, rows
            for p, lab in labs.items():
                if p in nuclei_of:
                    continue
                own = _owned(lab, (ay[i] - y, by[i] - y, ax[j] - x, bx[j] - x),
                             inner=(y > 0, x > 0, y + window < H, x + window < W))
                if not len(own):
                    continue
                kept = np.zeros(int(lab.max()) + 1, lab.dtype)
                kept[own] = own
                done[p] = {"own": own, "part": kept[lab], "rings": None, "table": None}  # the owned objects only
                if outputs.writer is not None:
                    done[p]["rings"] = trace_rings(done[p]["part"])
                if outputs.cells is not None:
                    done[p]["table"] = measure(done[p]["part"], image, mpp=mpp, ids=own)
            on_owned = {r: done[r]["part"] > 0 for r in set(nuclei_of.values()) if r in done}
            for p, r in nuclei_of.items():  # a type's objects: the nuclei map's owned nuclei that it holds
                if r in done:
                    held = labs[p][on_owned[r]]  # the type map on the owned nuclei's pixels (ids are the nuclei's)
                    present = np.zeros(max(int(held.max(initial=0)), int(done[r]["own"].max())) + 1, bool)
                    present[held] = True
                    own = done[r]["own"][present[done[r]["own"]]]
                    if len(own):
                        done[p] = dict(done[r], own=own)
            for p in labs:  # written in the prompts' order
                if p not in done:
                    continue
                d = done[p]
                n_objects[p] += len(d["own"])
                if outputs.writer is not None:
                    outputs.writer.add_labels(d["part"], ids=d["own"], classes=p, origin=(x * ds, y * ds),
                                              downsample=ds, rings=d["rings"])
                if outputs.cells is not None:
                    table = d["table"] if p not in nuclei_of else d["table"][np.isin(d["table"]["id"].to_numpy(),
                                                                                      d["own"])]
                    outputs.cells.append(to_slide_frame(table, p, x, y, mpp, ds))
    finally:
        images.close()
    return n_objects


def _owned(lab: np.ndarray, core, *, inner) -> np.ndarray:
    """Ids of ``lab`` with centroid in ``core`` (r0, r1, c0, c1) not touching the ``inner`` edges (top, left, bottom, right)."""
    r0, r1, c0, c1 = core
    own = core_ids(lab, (r0, r1), (c0, c1))
    cut = np.zeros(int(lab.max()) + 1, bool)
    for edge, flag in zip((lab[0], lab[:, 0], lab[-1], lab[:, -1]), inner):
        if flag:
            cut[edge] = True
    return own[~cut[own]]
