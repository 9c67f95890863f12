"""Whole slides in tiles with bounded memory: tissue only, instances merged across tiles, streamed outputs.

With the model, :func:`segment_slide` runs one tile grid over the tissue
(:mod:`xpath.pipeline._slide_model`). With a custom per-window ``segmenter``, as follows.
The slide is covered at the working resolution by overlapping ``tile × tile`` windows placed
as the model's tiles are (:func:`~xpath.segmentation.inference.tiling.tile_starts`), whose
*cores* (:func:`~xpath.segmentation.inference.tiling.tile_cores`: neighbouring cores meet in
the middle of the windows' overlap) partition the slide. Windows whose core holds no tissue in a low-resolution tissue mask are skipped.
Each window is segmented on its own; an instance is kept by the one window whose core
contains its centroid, so an object crossing a border is neither cut nor duplicated as long
as the overlap exceeds the largest object. Kept objects get slide-wide ids and go straight
to disk: label maps into memory-mapped arrays (then a tiled OME-TIFF), polygons into a
streamed GeoJSON, per-object rows into a streamed Parquet file. Memory is bounded by the
window size and the batch, not by the slide.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._types import Image, check_image, check_mpp
from ..io import GeoJSONWriter, atomic_path, write_ome_tiff
from ..segmentation import check_prompts
from ..segmentation.inference.precision import check_precision
from ..segmentation.inference.stitching import core_ids, merge_objects
from ..segmentation.inference.tiling import tile_cores, tile_starts
from ._slide_model import run_model
from ._slide_model import to_slide_frame as _to_slide_frame
from ._tissue import tissue_mask

__all__ = ["ArraySlide", "SlideResult", "segment_slide"]

log = logging.getLogger(__name__)


class ArraySlide:
    """An in-memory image behind the slide interface (``dimensions``, ``mpp``, ``read_at_mpp``, ``thumbnail``).

    Lets :func:`segment_slide` run on large plain images and on synthetic tissue.
    """

    def __init__(self, image, *, mpp: float | None = None, path: str | None = None):
        if mpp is None and isinstance(image, Image):
            mpp = image.mpp
        self.array = check_image(image)
        self.mpp = check_mpp(mpp, name="mpp")
        self.dimensions = (self.array.shape[1], self.array.shape[0])
        self.path = Path(path) if path is not None else Path(getattr(image, "path", None) or "image")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def close(self) -> None:
        return None

    def read_at_mpp(self, location, size, *, mpp: float) -> Image:
        scale = mpp / self.mpp
        x0, y0 = (int(v) for v in location)
        w, h = (int(v) for v in size)
        src_w, src_h = max(1, round(w * scale)), max(1, round(h * scale))
        crop = np.full((src_h, src_w, 3), 255, np.uint8)
        H, W = self.array.shape[:2]
        ys, xs = slice(max(0, y0), min(H, y0 + src_h)), slice(max(0, x0), min(W, x0 + src_w))
        if ys.start < ys.stop and xs.start < xs.stop:
            crop[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0] = self.array[ys, xs]
        if (src_h, src_w) != (h, w):
            from PIL import Image as PILImage

            crop = np.asarray(PILImage.fromarray(crop).resize((w, h), PILImage.BILINEAR))
        return Image(crop, mpp=mpp, origin=(x0, y0), path=str(self.path))

    def thumbnail(self, max_size: int = 1024) -> Image:
        H, W = self.array.shape[:2]
        scale = max(H, W) / max_size
        if scale <= 1:
            return Image(self.array, mpp=self.mpp, metadata={"downsample": 1.0})
        from PIL import Image as PILImage

        size = (max(1, round(W / scale)), max(1, round(H / scale)))
        small = np.asarray(PILImage.fromarray(self.array).resize(size, PILImage.BILINEAR))
        return Image(small, mpp=self.mpp * W / size[0], metadata={"downsample": W / size[0]})


@dataclass
class SlideResult:
    """Outputs of :func:`segment_slide` (files on disk plus small summaries in memory).

    Attributes
    ----------
    name : str
        Slide name (file stem).
    prompts : tuple of str
    mpp : float
        Working resolution (µm/px) of the label maps.
    shape : (int, int)
        ``(H, W)`` of the label maps at ``mpp``.
    downsample : float
        Level-0 pixels per working pixel.
    n_objects : dict of str to int
        Instances kept per instance-level prompt.
    presence : dict of str to float
        Highest per-tile presence of each prompt.
    tiles : pandas.DataFrame
        One row per model tile (the model) or window (a ``segmenter``): ``x``, ``y`` (working
        px), ``tissue_fraction``, ``processed``, ``seconds`` (NaN per model tile: they run in batches).
    tissue : numpy.ndarray
        Low-resolution tissue mask; ``tissue_downsample`` level-0 pixels per mask pixel.
    files : dict of str to pathlib.Path
        ``masks`` (OME-TIFF, one channel per prompt), ``geojson``, ``cells`` (Parquet).
    seconds : float
        Wall time.
    tiles_encoded : int
        Model tiles run through the image encoder (0 with a ``segmenter``).
    """

    name: str
    prompts: tuple[str, ...]
    mpp: float
    shape: tuple[int, int]
    downsample: float
    n_objects: dict[str, int]
    presence: dict[str, float]
    tiles: pd.DataFrame
    tissue: np.ndarray = field(repr=False)
    tissue_downsample: float = 1.0
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    tiles_encoded: int = 0

    def masks(self) -> dict[str, np.ndarray]:
        """Read the label maps back from the OME-TIFF (prompt → ``(H, W)`` array)."""
        from ..io import read_ome_tiff

        array, meta = read_ome_tiff(self.files["masks"])
        return dict(zip(meta["channels"], array))

    def cells(self) -> pd.DataFrame:
        """Read the per-object table back (empty if no measurement function was given)."""
        path = self.files.get("cells")
        return pd.read_parquet(path) if path is not None and path.exists() else pd.DataFrame()


def _model_predictor(model, *, device, batch_size: int, mpp: float | None, precision: str,
                     test_time_flips: bool = False):
    """The model's predictor for whole slides: loaded once, running at ``mpp`` (default the model's)."""
    from ..segmentation import TextPromptPredictor, load_model

    net = load_model(model, device)
    # panels of 16 tiles: a slide narrower than 8192 model px has no panel seam (no tile column encoded twice)
    return TextPromptPredictor(net, batch_size=batch_size, cache_tiles=0, panel_tiles=16, progress=False, mpp=mpp,
                               precision=precision, test_time_flips=test_time_flips)


class _Outputs:
    """The files of one slide being written: label stores (memory-mapped), GeoJSON, cell rows."""

    def __init__(self, out_dir: Path, name: str, shape: tuple[int, int], *, geojson: bool, cells: bool):
        self.out_dir, self.name, self.shape = out_dir, name, shape
        self.writer = GeoJSONWriter(out_dir / f"{name}.geojson", image_name=name) if geojson else None
        self.cells = _ParquetStream(out_dir / f"{name}.cells.parquet") if cells else None
        self.stores: dict[str, np.memmap] = {}
        self.paths: dict[str, Path] = {}

    def store(self, prompt: str, kind: str) -> np.memmap:
        """The ``(H, W)`` label map of ``prompt`` (int32 for instances, uint8 else), created on first use."""
        if prompt not in self.stores:
            self.paths[prompt] = self.out_dir / f".{self.name}.{len(self.stores)}.labels.part"
            self.stores[prompt] = np.memmap(self.paths[prompt], mode="w+", shape=self.shape,
                                            dtype=np.int32 if kind == "instances" else np.uint8)
        return self.stores[prompt]

    def close(self, error: BaseException | None, mpp: float) -> dict[str, Path]:
        """Finish every file (or remove them all on ``error``); the written files by kind."""
        files = {}
        if self.writer is not None:
            self.writer.close(_error=error)
        if self.cells is not None and self.cells.close(error) and error is None:
            files["cells"] = self.cells.path
        if error is None and self.stores:
            # the stores are scratch files read back through their own mappings and then deleted: no flush
            # (writing their dirty pages to disk first took 0.23 s of the 0.85 s this close took on the sample slide)
            files["masks"] = write_ome_tiff(self.out_dir / f"{self.name}.masks.ome.tif", dict(self.stores), mpp=mpp,
                                            level=1)  # mostly zeros: 3× faster than zlib's default, files stay small
        for prompt, path in self.paths.items():
            del self.stores[prompt]
            path.unlink(missing_ok=True)
        if self.writer is not None and error is None:
            files["geojson"] = self.writer.path
        return files


class _ParquetStream:
    """Append DataFrames to one Parquet file; atomic on close.

    Frames are held until ``batch_rows`` rows have come, then converted and written as one row group:
    a window's cell table is a few hundred rows of about 30 columns, and pandas → Arrow costs per column,
    so converting every window's frame on its own took most of the writes' time.
    """

    def __init__(self, path: Path, *, batch_rows: int = 50_000):
        self.path = path
        self._ctx = atomic_path(path, suffix=".parquet.part")
        self._tmp = self._ctx.__enter__()
        self._writer = None
        self._held: list[pd.DataFrame] = []
        self._held_rows = 0
        self.batch_rows = int(batch_rows)
        self.rows = 0

    def append(self, frame: pd.DataFrame) -> None:
        if frame is None or not len(frame):
            return
        self._held.append(frame)
        self._held_rows += len(frame)
        self.rows += len(frame)
        if self._held_rows >= self.batch_rows:
            self._write_held()

    def _write_held(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._held:
            return
        table = pa.Table.from_pandas(pd.concat(self._held, ignore_index=True), preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression="zstd")
            self._schema = table.schema
        else:
            table = table.cast(self._schema)
        self._writer.write_table(table)
        self._held, self._held_rows = [], 0

    def close(self, error: BaseException | None = None) -> bool:
        """Finish the file; returns False (and leaves no file) on error or when nothing was written."""
        if error is None:
            self._write_held()
        if self._writer is not None:
            self._writer.close()
        if error is None and self._writer is not None:
            self._ctx.__exit__(None, None, None)
            return True
        exc = error if error is not None else RuntimeError("no rows were written")
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)  # removes the temporary file
        return False


def segment_slide(
    slide,
    prompts: Sequence[str],
    *,
    out_dir: str | os.PathLike,
    model="xpath_small",
    segmenter: Callable | None = None,
    measure: Callable | None = None,
    mpp: float | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    min_tissue: float = 0.01,
    thumbnail_size: int = 2048,
    threshold: float = 0.5,
    min_area_um2: float = 10.0,
    batch_size: int = 4,
    device=None,
    geojson: bool = True,
    progress: bool = True,
    on_unsupported: str = "raise",
    precision: str = "float32",
    test_time_flips: bool = False,
) -> SlideResult:
    """Segment a whole slide tile by tile over tissue, merging instances across tiles, streaming outputs.

    With the model (no ``segmenter``), the slide is covered by the model's own tile grid at
    the working resolution and only the tiles that touch tissue run, each encoded once,
    read ahead by a background thread; objects are stitched by the tiled watershed and get
    ids ``1..N`` per prompt, except nucleus-type prompts ("lymphocytes", "tumor nuclei"), which
    split the all-nuclei map as :meth:`~xpath.segmentation.TextPromptPredictor.predict` does (one
    nucleus, one type) and keep its ids (see :mod:`xpath.pipeline._slide_model`). A ``segmenter``
    runs on overlapping windows instead (the model's way before; the module docstring).

    Parameters
    ----------
    slide : str, os.PathLike, xpath.io.Slide, ArraySlide, numpy.ndarray or xpath.Image
        A slide file (SVS, NDPI, TIFF, ...), an opened slide, or a large in-memory image.
    prompts : sequence of str
        What to segment (e.g. ``["nuclei", "stroma"]``).
    out_dir : str or os.PathLike
        Output folder: ``{name}.masks.ome.tif``, ``{name}.geojson``, ``{name}.cells.parquet``.
    model : str, path or model
        Segmentation model (see :func:`xpath.segmentation.segment`); loaded once.
    segmenter : callable, optional
        Replaces the model: ``segmenter(tile: xpath.Image) -> result`` with dicts ``semantic``,
        ``instances``, ``presence`` keyed by prompt (a :class:`~xpath.segmentation.Segmentation`).
        Optional attributes ``mpp`` and ``tile`` give its working resolution and window size.
    measure : callable, optional
        ``measure(labels, image, *, mpp, ids) -> DataFrame`` per window and instance prompt,
        with an ``id`` column (e.g. :func:`xpath.biomarkers.cell_table`); rows of kept objects
        are streamed to ``{name}.cells.parquet`` with slide coordinates.
    mpp : float, optional
        Working resolution; default the model's (or the slide's). With the model this is the
        resolution the model runs at: ``mpp=0.5`` runs the 0.25 µm/px model on a 20× slide
        without upsampling it (4× fewer tiles; accuracy cost in docs/model_card.md).
    tile, overlap : int, optional
        Window side and overlap in working pixels (default: 4× the model tile, 1/8 of it).
        The overlap must exceed twice the largest object. With the model, ``tile`` is the
        side of the windows in which objects are measured and written (overlap: twice the
        stitcher's margin), not of the tiles the model runs.
    min_tissue : float
        Windows whose core has less tissue than this fraction are skipped (``segmenter``
        only: the model runs every tile that touches tissue).
    thumbnail_size : int
        Long side of the thumbnail used for tissue detection.
    threshold, min_area_um2, batch_size, device, precision, test_time_flips
        Passed to the model's predictor (:class:`~xpath.segmentation.TextPromptPredictor`; ``precision``
        float32 by default, ``"auto"`` bfloat16 on AMX CPUs and recent GPUs; ``test_time_flips`` averages each
        tile over its four mirrored views, 4× the compute).
    geojson : bool
        Write the QuPath GeoJSON (tissue annotation + one detection per instance).
    progress : bool
        tqdm bar over windows (rate in tiles/s, with ETA).
    on_unsupported : {"raise", "empty", "nearest"}
        Prompts the model was not trained for (:func:`xpath.segmentation.supported_prompts`):
        refused before the slide is opened (default), or answered as
        :meth:`~xpath.segmentation.TextPromptPredictor.predict` describes.

    Returns
    -------
    SlideResult
    """
    prompts = check_prompts(prompts)
    check_precision(precision)
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue must be in [0, 1], got {min_tissue}")
    if segmenter is None:
        from ..segmentation.support import require_supported

        require_supported(prompts, model, on_unsupported=on_unsupported)  # before the slide is opened
    start_time = time.perf_counter()
    src, owned = _open(slide)
    try:
        if src.mpp is None:
            raise ValueError(f"the slide {src.path} records no mpp; open it with open_slide(path, mpp=...)")
        predictor = None
        if segmenter is None:
            predictor = _model_predictor(model, device=device, batch_size=batch_size, mpp=mpp, precision=precision,
                                         test_time_flips=test_time_flips)
            predictor.progress = progress
        work_mpp = check_mpp(predictor.model_mpp if predictor is not None else
                             mpp if mpp is not None else getattr(segmenter, "mpp", None) or src.mpp)
        base = predictor.tile if predictor is not None else int(getattr(segmenter, "tile", 256))
        tile = int(tile if tile is not None else 4 * base)
        overlap = int(overlap if overlap is not None else max(32, tile // 8))
        downsample = work_mpp / src.mpp
        W0, H0 = src.dimensions
        H, W = math.ceil(H0 / downsample), math.ceil(W0 / downsample)
        name = Path(str(src.path)).name.split(".")[0]
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        tissue = tissue_mask(src.thumbnail(thumbnail_size).array)
        t_down = W0 / tissue.shape[1]  # level-0 px per thumbnail px
        outputs = _Outputs(out_dir, name, (H, W), geojson=geojson, cells=measure is not None)
        error = None
        try:
            if outputs.writer is not None and tissue.any():
                outputs.writer.add_mask(tissue, "tissue", downsample=t_down)
            if predictor is not None:
                rows, presence, n_objects = run_model(src, prompts, predictor, outputs, tissue=tissue, t_down=t_down,
                                                      measure=measure, window=tile, threshold=threshold,
                                                      min_area_um2=min_area_um2, on_unsupported=on_unsupported)
            else:
                rows, presence, n_objects = _run_windows(src, prompts, segmenter, outputs, measure=measure,
                                                         tissue=tissue, t_down=t_down, work_mpp=work_mpp,
                                                         tile=tile, overlap=overlap, min_tissue=min_tissue,
                                                         progress=progress)
        except BaseException as err:
            error = err
            raise
        finally:
            files = outputs.close(error, work_mpp)
    finally:
        if owned:
            src.close()
    tiles_table = pd.DataFrame(rows, columns=["x", "y", "tissue_fraction", "processed", "seconds"])
    processed = int(tiles_table["processed"].sum())
    seconds = time.perf_counter() - start_time
    log.info("%s: %d of %d tiles over tissue, %s objects, %.1f s", name, processed, len(tiles_table),
             dict(n_objects), seconds)
    return SlideResult(name=name, prompts=tuple(prompts), mpp=work_mpp, shape=(H, W), downsample=downsample,
                       n_objects=n_objects, presence=presence, tiles=tiles_table, tissue=tissue,
                       tissue_downsample=t_down, files=files, seconds=seconds,
                       tiles_encoded=predictor.tiles_encoded if predictor is not None else 0)


def _run_windows(src, prompts, segmenter, outputs, *, measure, tissue, t_down, work_mpp, tile, overlap, min_tissue,
                 progress):
    """A ``segmenter`` over overlapping windows whose core holds tissue; ``(window rows, presence, n_objects)``."""
    from tqdm.auto import tqdm

    H, W = outputs.shape
    downsample = work_mpp / src.mpp
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    (y_core0, y_core1), (x_core0, x_core1) = tile_cores(ys, tile, H), tile_cores(xs, tile, W)
    prompt_kind: dict[str, str] = {}
    next_id = 1
    n_objects: dict[str, int] = {}
    presence = {p: 0.0 for p in prompts}
    rows = []
    bar = tqdm(total=len(ys) * len(xs), desc=outputs.name, unit="tile", disable=not progress)
    for iy, y in enumerate(ys):
        for ix, x in enumerate(xs):
            cy0, cy1, cx0, cx1 = y_core0[iy], y_core1[iy], x_core0[ix], x_core1[ix]
            t0 = time.perf_counter()
            # tissue in the core, from the thumbnail
            ty0, ty1 = int(cy0 * downsample / t_down), math.ceil(cy1 * downsample / t_down)
            tx0, tx1 = int(cx0 * downsample / t_down), math.ceil(cx1 * downsample / t_down)
            frac = float(tissue[ty0:max(ty1, ty0 + 1), tx0:max(tx1, tx0 + 1)].mean())
            row = {"x": int(x), "y": int(y), "tissue_fraction": frac, "processed": False, "seconds": 0.0}
            bar.update(1)
            rows.append(row)
            if frac < min_tissue or frac == 0.0:
                continue
            origin = (round(x * downsample), round(y * downsample))
            window = src.read_at_mpp(origin, (tile, tile), mpp=work_mpp)
            result = segmenter(window)
            for prompt in prompts:
                presence[prompt] = max(presence[prompt], float(result.presence.get(prompt, 0.0)))
                kind = "instances" if prompt in result.instances else "semantic"
                if prompt_kind.setdefault(prompt, kind) != kind:
                    raise ValueError(f"prompt {prompt!r} gave instances in some tiles and not in others")
                store = outputs.store(prompt, kind)
                # the part of the core that lies inside the slide, in window coordinates
                ry0, ry1 = cy0 - y, min(cy1, H) - y
                rx0, rx1 = cx0 - x, min(cx1, W) - x
                if kind == "semantic":
                    store[cy0:cy0 + (ry1 - ry0), cx0:cx0 + (rx1 - rx0)] = \
                        np.asarray(result.semantic[prompt][ry0:ry1, rx0:rx1], np.uint8)
                    continue
                labels = np.asarray(result.instances[prompt], np.int32)
                pasted, kept = _paste_owned(store, labels, next_id, y, x, ry0, ry1, rx0, rx1)
                next_id += len(kept)
                n_objects[prompt] = n_objects.get(prompt, 0) + len(kept)
                if outputs.writer is not None and len(kept):
                    outputs.writer.add_labels(pasted, ids=kept, classes=prompt, origin=origin, downsample=downsample)
                if outputs.cells is not None and len(kept):
                    table = measure(pasted, window.array[: pasted.shape[0], : pasted.shape[1]], mpp=work_mpp, ids=kept)
                    outputs.cells.append(_to_slide_frame(table, prompt, x, y, work_mpp, downsample))
            row.update(processed=True, seconds=time.perf_counter() - t0)
    bar.close()
    return rows, presence, n_objects


def _paste_owned(store, labels, first_id, y, x, ry0, ry1, rx0, rx1, min_free=0.5):
    """Paste the objects a window owns into the slide-wide label map.

    Owned = centroid inside the window's core ``[ry0, ry1) × [rx0, rx1)``
    (:func:`~xpath.segmentation.inference.stitching.core_ids`). Owned objects get ids
    ``first_id, first_id + 1, ...``. They fill only pixels no earlier window claimed; an
    owned object with less than ``min_free`` of its pixels free duplicates an object already
    kept (neighbouring windows disagreed near their border) and is dropped
    (:func:`~xpath.segmentation.inference.stitching.merge_objects`). Returns the window's
    pasted labels (clipped to the slide) and the kept ids.
    """
    owned = core_ids(labels, (ry0, ry1), (rx0, rx1))
    H, W = store.shape
    part = labels[: min(labels.shape[0], H - y), : min(labels.shape[1], W - x)]
    view = store[y : y + part.shape[0], x : x + part.shape[1]]
    pasted, n_kept = merge_objects(view, part, owned, first_id=first_id, min_free=min_free)
    return pasted, np.arange(first_id, first_id + n_kept, dtype=np.int64)


def _open(slide):
    """Return ``(slide-like, opened_here)``."""
    from ..io import SLIDE_SUFFIXES, open_slide, read_image

    if isinstance(slide, (str, os.PathLike)):
        path = Path(slide)
        if path.suffix.lower() in SLIDE_SUFFIXES:
            return open_slide(path), True
        img = read_image(path)
        if img.mpp is None:
            raise ValueError(f"{path} records no mpp; pass an xpath.Image with mpp or use open_slide(path, mpp=...)")
        return ArraySlide(img, path=str(path)), True
    if isinstance(slide, (np.ndarray, Image)):
        return ArraySlide(slide), True
    if hasattr(slide, "read_at_mpp") and hasattr(slide, "dimensions"):
        return slide, False
    raise TypeError(f"slide must be a path, an opened slide, an xpath.Image or an array, got {type(slide).__name__}")
