"""Tiled inference with bounded memory: where the tiles go, panels, and the blending of their maps.

An image larger than the model's tile is cut into overlapping ``tile × tile`` windows
(:func:`tile_starts`), and the per-tile maps are blended with separable cosine weights that
fall towards tile edges shared with a neighbour (:func:`axis_weights`; they sum to one
across every overlap, and stay at one on the image border).

Memory is bounded in both directions. The columns of the image are cut into **panels** of
at most ``panel_width`` pixels of tiles (:func:`plan_panels`); tiles run panel by panel,
row-major within a panel, in batches. Each panel runs every tile of the global grid that
touches its columns and blends with the global weights, so its output is exactly the
whole-image blend; the tile column on a seam runs twice. Within a panel, blending happens
in a buffer that holds only the rows of tiles still in flight (:class:`RowBlender`): as
soon as no later tile can touch a row, the blended rows are handed to a consumer as a
:class:`Band` and dropped. The full-size allocations are the caller's output arrays only.

Instances are built on the blended maps by
:class:`~xpath.segmentation.inference.stitching.InstanceStitcher`, a consumer of the bands.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "Band",
    "Panel",
    "RowBlender",
    "axis_weights",
    "extract_tile",
    "nearest_index",
    "plan_panels",
    "predict_tiled",
    "prefetch",
    "resize_uint8",
    "tile_batches",
    "tile_cores",
    "tile_starts",
]


def tile_starts(length: int, tile: int, overlap: int) -> np.ndarray:
    """Start offsets of overlapping tiles that cover ``[0, length)``.

    The tiles are spread evenly so that neighbours overlap by at least ``overlap`` pixels;
    the last tile ends exactly at ``length`` (a single tile at 0 when ``length <= tile``).

    Examples
    --------
    >>> tile_starts(1000, 512, 64).tolist()
    [0, 244, 488]
    >>> tile_starts(300, 512, 64).tolist()
    [0]
    """
    if tile <= 0:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile={tile}), got {overlap}")
    if length <= tile:
        return np.zeros(1, np.int64)
    n = int(np.ceil((length - overlap) / (tile - overlap)))
    return np.rint(np.linspace(0, length - tile, n)).astype(np.int64)


def tile_cores(starts: np.ndarray, tile: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Core intervals ``[a_i, b_i)`` of the tiles at ``starts``: they partition ``[0, length)``.

    Neighbouring cores meet at the middle of the two tiles' overlap, so a core lies at least
    half the overlap inside its tile wherever the tile has a neighbour: an object whose
    centroid is in a core is whole in that tile when it is smaller than half the overlap.

    Examples
    --------
    >>> a, b = tile_cores(tile_starts(1000, 512, 64), 512, 1000)
    >>> a.tolist(), b.tolist()
    ([0, 378, 622], [378, 622, 1000])
    """
    starts = np.asarray(starts, np.int64)
    mid = (starts[1:] + np.minimum(starts[:-1] + tile, length)) // 2
    return np.concatenate([[0], mid]), np.concatenate([mid, [length]])


def _ramp(n: int) -> np.ndarray:
    """Rising half-cosine of ``n`` samples in (0, 1); ``_ramp(n) + _ramp(n)[::-1] == 1``."""
    i = np.arange(n, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / n)).astype(np.float32)


def axis_weights(starts: np.ndarray, tile: int, length: int) -> list[np.ndarray]:
    """Per-tile 1-D blending weights along one axis.

    Each weight vector is one except over the overlap with the previous / next tile, where
    it rises / falls along a half cosine; the weights of two overlapping tiles sum to one.

    Returns
    -------
    list of numpy.ndarray
        One ``(min(tile, length - start),)`` float32 vector per tile.
    """
    out = []
    for k, s in enumerate(starts):
        n = int(min(tile, length - s))
        w = np.ones(n, np.float32)
        if k > 0:
            ov = int(starts[k - 1] + tile - s)
            if ov > 0:
                w[:ov] *= _ramp(ov)[: n]
        if k + 1 < len(starts):
            ov = int(s + tile - starts[k + 1])
            if ov > 0:
                w[n - ov:] *= _ramp(ov)[::-1][-n:]
        out.append(w)
    return out


def resize_uint8(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` ``(H, W)`` (area filter when shrinking, bilinear else)."""
    from PIL import Image as PILImage

    h, w = size
    down = h < image.shape[0]
    resample = PILImage.Resampling.BOX if down else PILImage.Resampling.BILINEAR
    return np.asarray(PILImage.fromarray(image).resize((w, h), resample=resample))


def nearest_index(n_out: int, n_in: int) -> np.ndarray:
    """Row (or column) indices that map an output grid of ``n_out`` onto an input of ``n_in`` (nearest)."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def extract_tile(image: np.ndarray, y: int, x: int, tile: int) -> np.ndarray:
    """The ``tile × tile`` window at ``(y, x)``; reflect-padded where the image is smaller."""
    win = image[y: y + tile, x: x + tile]
    ph, pw = tile - win.shape[0], tile - win.shape[1]
    if ph or pw:
        mode = "reflect" if min(win.shape[:2]) > 1 else "edge"
        win = np.pad(win, ((0, ph), (0, pw)) + ((0, 0),) * (win.ndim - 2), mode=mode)
    return win


class RowBlender:
    """Weighted-average accumulator over the rows of tiles in flight.

    Parameters
    ----------
    n_maps : int
        Channels per tile (``C``).
    width : int
        Image width ``W``.

    Notes
    -----
    Holds ``(C, rows_in_flight, W)`` float32 sums and ``(rows_in_flight, W)`` weights in
    buffers that grow to the largest span of rows in flight and are then reused:
    :meth:`pop` returns the finished rows and shifts the rest up in place.
    """

    def __init__(self, n_maps: int, width: int, *, allow_gaps: bool = False) -> None:
        self.n_maps, self.width = int(n_maps), int(width)
        self.allow_gaps = bool(allow_gaps)  # pixels no tile covered blend to 0 instead of raising
        self.y0 = 0
        self.rows_held = 0
        self._acc = np.zeros((self.n_maps, 0, self.width), np.float32)
        self._wsum = np.zeros((0, self.width), np.float32)

    def _reserve(self, rows: int) -> None:
        if rows <= self._wsum.shape[0]:
            return
        acc = np.zeros((self.n_maps, rows, self.width), np.float32)
        wsum = np.zeros((rows, self.width), np.float32)
        acc[:, : self.rows_held] = self._acc[:, : self.rows_held]
        wsum[: self.rows_held] = self._wsum[: self.rows_held]
        self._acc, self._wsum = acc, wsum

    def add(self, y: int, x: int, maps: np.ndarray, weight: np.ndarray) -> None:
        """Add ``maps`` (C, h, w) with ``weight`` (h, w) at image offset ``(y, x)``."""
        if y < self.y0:
            raise ValueError(f"rows before {self.y0} were already returned; got a tile at y={y}")
        h, w = weight.shape
        end = y + h - self.y0
        self._reserve(end)
        self.rows_held = max(self.rows_held, end)
        r = y - self.y0
        self._acc[:, r: r + h, x: x + w] += maps * weight
        self._wsum[r: r + h, x: x + w] += weight

    def pop(self, y_end: int, columns: tuple[int, int] | None = None) -> tuple[int, np.ndarray]:
        """Return ``(y_start, band)`` with the blended rows ``[y_start, y_end)`` as (C, h, W).

        ``columns=(c0, c1)`` blends and returns only those columns (the rest is dropped).
        """
        c0, c1 = (0, self.width) if columns is None else (int(columns[0]), int(columns[1]))
        k = int(y_end) - self.y0
        if k <= 0:
            return self.y0, np.zeros((self.n_maps, 0, c1 - c0), np.float32)
        if k > self.rows_held:
            if not self.allow_gaps:
                raise ValueError(f"rows up to {y_end} were not all accumulated (have up to "
                                 f"{self.y0 + self.rows_held})")
            self._reserve(k)
            self.rows_held = k
        wsum = self._wsum[:k, c0:c1]
        if not self.allow_gaps and (wsum <= 0).any():
            raise RuntimeError("some pixels were covered by no tile; the tile grid is inconsistent")
        band = self._acc[:, :k, c0:c1] / np.where(wsum > 0, wsum, 1.0)
        start, rest = self.y0, self.rows_held - k
        self._acc[:, :rest] = self._acc[:, k: k + rest]  # overlapping move: numpy buffers it
        self._wsum[:rest] = self._wsum[k: k + rest]
        self._acc[:, rest: self.rows_held] = 0.0
        self._wsum[rest: self.rows_held] = 0.0
        self.rows_held = rest
        self.y0 += k
        return start, band


@dataclass(frozen=True)
class Panel:
    """A vertical band of the image processed on its own (see :func:`plan_panels`).

    Attributes
    ----------
    core : tuple of int
        ``[a, b)``: the columns this panel answers for; the cores of a plan partition ``[0, W)``.
    emit : tuple of int
        ``[a - halo, b + halo)`` clipped to the image: the columns of its :class:`Band` s.
    xs : numpy.ndarray
        Starts of the tile columns it runs: every column of the global grid that touches ``emit``.
    """

    core: tuple[int, int]
    emit: tuple[int, int]
    xs: np.ndarray


class Band(NamedTuple):
    """Finished (blended) rows of one panel, as :func:`predict_tiled` hands them over.

    ``data`` ``(C, h, w)`` covers rows ``[y, y + h)`` and columns ``[x, x + w)`` (the
    panel's ``emit`` range); of those, the columns ``core`` belong to this panel and the rest
    is context shared with its neighbours.
    """

    y: int
    x: int
    data: np.ndarray
    core: tuple[int, int]

    def core_data(self) -> np.ndarray:
        """``data`` restricted to the core columns."""
        return self.data[:, :, self.core[0] - self.x: self.core[1] - self.x]


def plan_panels(width: int, tile: int, overlap: int, *, panel_width: int | None = None, halo: int = 0) -> list[Panel]:
    """Cut the columns of an image into panels of at most ``panel_width`` pixels of tiles.

    Panels are what keeps the working memory of :func:`predict_tiled` independent of the
    image width: tiles are run panel by panel, top to bottom within a panel, so the blending
    buffers span one panel, not the image. Panel borders (seams) lie at the centre of a tile
    column; that tile column is run by both panels it straddles (the price: one extra tile
    column per seam). Each panel runs **every** tile of the global grid that touches its
    ``emit`` range and blends with the global weights, so its output there is exactly the
    whole-image blend — panels never disagree.

    Parameters
    ----------
    width : int
        Image width ``W``.
    tile, overlap : int
        As in :func:`tile_starts`.
    panel_width : int, optional
        Largest extent (px) of a panel's tiles; ``None``: one panel. Always at least the
        tiles that a seam and its halo need.
    halo : int
        Context columns each panel emits beyond its core on either side (the instance
        stitcher's margin).

    Examples
    --------
    >>> [p.core for p in plan_panels(4096, 512, 64, panel_width=2048)]
    [(0, 1600), (1600, 2944), (2944, 4096)]
    >>> [p.core for p in plan_panels(1000, 512, 64, panel_width=2048)]
    [(0, 1000)]
    """
    if panel_width is not None and panel_width < tile:
        raise ValueError(f"panel_width must be >= tile ({tile}) or None, got {panel_width}")
    if halo < 0:
        raise ValueError(f"halo must be >= 0, got {halo}")
    xs = tile_starts(width, tile, overlap)

    def panel(a: int, b: int) -> Panel:
        e0, e1 = max(a - halo, 0), min(b + halo, width)
        return Panel((a, b), (e0, e1), xs[(xs < e1) & (xs + tile > e0)])

    def extent(p: Panel) -> int:
        return int(p.xs[-1] + tile - p.xs[0])

    if panel_width is None or width <= panel_width:
        return [panel(0, width)]
    seams = [int(x) + tile // 2 for x in xs[1:-1]]
    panels, a = [], 0
    while True:
        last = panel(a, width)
        if extent(last) <= panel_width:
            panels.append(last)
            return panels
        ahead = [b for b in seams if b > a]
        if not ahead:
            panels.append(last)
            return panels
        fits = [b for b in ahead if extent(panel(a, b)) <= panel_width]
        b = fits[-1] if fits else ahead[0]
        panels.append(panel(a, b))
        a = b


def tile_batches(shape: tuple[int, int], tile: int, overlap: int, batch_size: int, *,
                 panel_width: int | None = None, halo: int = 0,
                 keep: Callable[[int, int], bool] | None = None) -> list[list[tuple[int, int]]]:
    """The ``(y, x)`` origins of the tiles of an image of ``shape``, in batches, in run order.

    Panel by panel (:func:`plan_panels`), row-major within a panel; a batch never spans two
    panels. :func:`predict_tiled` visits tiles in exactly this order and batching (given the
    same ``panel_width``, ``halo`` and ``keep``), so per-batch results (e.g. cached features)
    can be keyed by the batch's origins. ``keep(y, x)``: run only the tiles it accepts
    (e.g. those over tissue).

    Examples
    --------
    >>> tile_batches((100, 120), 64, 16, 4)
    [[(0, 0), (0, 28), (0, 56), (36, 0)], [(36, 28), (36, 56)]]
    """
    plan = _panel_batches(shape, tile, overlap, batch_size, panel_width, halo, keep)
    return [b for _, batches in plan for b in batches]


def _panel_batches(shape, tile, overlap, batch_size, panel_width, halo, keep=None):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ys = tile_starts(shape[0], tile, overlap)
    out = []
    for p in plan_panels(shape[1], tile, overlap, panel_width=panel_width, halo=halo):
        order = [(int(y), int(x)) for y in ys for x in p.xs if keep is None or keep(int(y), int(x))]
        out.append((p, [order[i: i + batch_size] for i in range(0, len(order), batch_size)]))
    return out


TileFn = Callable[[np.ndarray, Sequence[tuple[int, int]]], tuple[np.ndarray, np.ndarray]]


def _tiles_of(image, origins: Sequence[tuple[int, int]], tile: int) -> np.ndarray:
    """``(B, tile, tile, ...)`` tiles at ``origins``: sliced from an array, or read by a tile source."""
    if hasattr(image, "tiles"):
        return np.asarray(image.tiles(origins, tile))
    return np.stack([extract_tile(image, y, x, tile) for y, x in origins])


def prefetch(read: Callable, jobs: list, depth: int):
    """Yield ``read(job)`` per job in order, up to ``depth`` jobs ahead in a thread (0: in this one).

    Slide decoding and resizing release the GIL, so reads overlap with the model's compute (or
    with measuring the objects of the window before).
    """
    if depth <= 0:
        yield from map(read, jobs)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="xpath-read") as pool:
        pending = deque(pool.submit(read, job) for job in jobs[:depth])
        for job in jobs[depth:] + [None] * len(pending):
            result = pending.popleft().result()
            if job is not None:
                pending.append(pool.submit(read, job))
            yield result


def _emit(blender: RowBlender, y_end: int, step: int, x0: int, panel: Panel, on_band) -> None:
    """Pop the finished rows before ``y_end`` in bands of at most ``step`` rows and hand them on."""
    e0, e1 = panel.emit
    while blender.y0 < y_end:
        y, data = blender.pop(min(y_end, blender.y0 + step), columns=(e0 - x0, e1 - x0))
        on_band(Band(y, e0, data, panel.core))


def predict_tiled(
    image,
    fn: TileFn,
    *,
    tile: int,
    overlap: int,
    n_maps: int,
    on_band: Callable[[Band], None],
    batch_size: int = 4,
    panel_width: int | None = None,
    halo: int = 0,
    keep: Callable[[int, int], bool] | None = None,
    read_ahead: int = 0,
    progress: bool = False,
    desc: str = "tiles",
) -> np.ndarray | None:
    """Run ``fn`` over overlapping tiles of ``image`` and stream the blended maps.

    Parameters
    ----------
    image : numpy.ndarray or tile source
        ``(H, W, ...)`` array (usually RGB uint8), tiles are cut from it by slicing; or an
        object with ``shape`` ``(H, W, ...)`` and ``tiles(origins, tile) -> (B, tile, tile, ...)``
        (e.g. a whole slide read on demand).
    fn : callable
        ``fn(tiles, origins) -> (maps, scalars)``: ``tiles`` ``(B, tile, tile, ...)``,
        ``origins`` the ``(y, x)`` of each tile; ``maps`` ``(B, n_maps, tile, tile)``
        float, ``scalars`` ``(B, S)`` float or ``None``.
    tile, overlap : int
        Tile side and minimum overlap between neighbours, in pixels.
    n_maps : int
        Number of map channels ``fn`` returns.
    on_band : callable
        ``on_band(band)`` receives each :class:`Band` of blended rows: panel by panel, rows
        in order within a panel; every pixel lies in the ``core`` of exactly one band.
    batch_size : int
        Tiles per call of ``fn``.
    panel_width, halo : int, optional
        Panels (:func:`plan_panels`): the working memory is ``O(tile × panel_width)``
        whatever the image size; ``None``: one panel as wide as the image.
    keep : callable, optional
        ``keep(y, x)``: run only those tiles (e.g. over tissue); pixels no kept tile covers get 0.
    read_ahead : int
        Batches read ahead in a background thread (0: read in this thread).
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    numpy.ndarray or None
        ``(S,)`` maximum over tiles of ``scalars`` (``None`` when ``fn`` returns none or no tile ran).
    """
    height, width = image.shape[:2]
    plan = _panel_batches((height, width), tile, overlap, batch_size, panel_width, halo, keep)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    wy = dict(zip(ys.tolist(), axis_weights(ys, tile, height)))
    wx = dict(zip(xs.tolist(), axis_weights(xs, tile, width)))
    step = height if keep is None else tile  # with gaps, bands of at most one tile of rows
    jobs = [origins for _, batches in plan for origins in batches]
    reads = prefetch(lambda origins: _tiles_of(image, origins, tile), jobs, read_ahead)
    scal = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(b) for b in jobs), desc=desc, unit="tile")
    try:
        for panel, batches in plan:
            x0 = int(panel.xs[0])
            blender = RowBlender(n_maps, min(int(panel.xs[-1]) + tile, width) - x0, allow_gaps=keep is not None)
            for b, origins in enumerate(batches):
                maps, scalars = fn(next(reads), origins)
                if maps.shape[:2] != (len(origins), n_maps):
                    raise RuntimeError(f"fn returned maps of shape {maps.shape}, "
                                       f"expected ({len(origins)}, {n_maps}, ...)")
                if scalars is not None:
                    s = np.asarray(scalars, np.float32).max(0)
                    scal = s if scal is None else np.maximum(scal, s)
                for k, (y, x) in enumerate(origins):
                    weight = np.outer(wy[y], wx[x])
                    h, w = weight.shape
                    blender.add(y, x - x0, maps[k, :, :h, :w], weight)
                _emit(blender, batches[b + 1][0][0] if b + 1 < len(batches) else height, step, x0, panel, on_band)
                if bar is not None:
                    bar.update(len(origins))
            if not batches:  # a panel without kept tiles: its rows are all 0
                _emit(blender, height, step, x0, panel, on_band)
    finally:
        reads.close()
        if bar is not None:
            bar.close()
    return scal
