"""Tiled inference with bounded memory: overlapping tiles, blending, strip-wise instances.

An image larger than the model's tile is cut into overlapping ``tile × tile`` windows
(:func:`tile_starts`), processed in batches **in row-major order**, and the per-tile maps
are blended with separable cosine weights that fall towards tile edges shared with a
neighbour (:func:`axis_weights`; they sum to one across every overlap, and stay at one on
the image border). Blending happens in a buffer that holds only the rows of tiles still in
flight (:class:`RowBlender`): as soon as no later tile can touch a row, the blended rows
are handed to a consumer and dropped. The full-size allocations are the caller's output
arrays only.

Instances are built on the blended full-resolution maps by :class:`InstanceStitcher`,
which runs the watershed (:func:`~xpath.segmentation.postprocess.instances_from_maps`) on
blocks of each horizontal strip with ``margin`` pixels of context on every side, and keeps
from each block only the objects whose centroid lies in the block's core. An object that
straddles a tile, strip or block border is therefore labelled once, whole, by the one block
that owns its centroid; the margin must exceed the largest object's extent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from .postprocess import instances_from_maps

__all__ = [
    "InstanceStitcher",
    "RowBlender",
    "axis_weights",
    "extract_tile",
    "predict_tiled",
    "tile_batches",
    "tile_starts",
]

logger = logging.getLogger(__name__)


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

    def __init__(self, n_maps: int, width: int) -> None:
        self.n_maps, self.width = int(n_maps), int(width)
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

    def pop(self, y_end: int) -> tuple[int, np.ndarray]:
        """Return ``(y_start, band)`` with the blended rows ``[y_start, y_end)`` as (C, h, W)."""
        k = int(y_end) - self.y0
        if k <= 0:
            return self.y0, np.zeros((self.n_maps, 0, self.width), np.float32)
        if k > self.rows_held:
            raise ValueError(f"rows up to {y_end} were not all accumulated (have up to {self.y0 + self.rows_held})")
        wsum = self._wsum[:k]
        if (wsum <= 0).any():
            raise RuntimeError("some pixels were covered by no tile; the tile grid is inconsistent")
        band = self._acc[:, :k] / wsum
        start, rest = self.y0, self.rows_held - k
        self._acc[:, :rest] = self._acc[:, k: k + rest]  # overlapping move: numpy buffers it
        self._wsum[:rest] = self._wsum[k: k + rest]
        self._acc[:, rest: self.rows_held] = 0.0
        self._wsum[rest: self.rows_held] = 0.0
        self.rows_held = rest
        self.y0 += k
        return start, band


def tile_batches(shape: tuple[int, int], tile: int, overlap: int, batch_size: int) -> list[list[tuple[int, int]]]:
    """The ``(y, x)`` origins of the tiles of an image of ``shape``, row-major, in batches.

    :func:`predict_tiled` visits tiles in exactly this order and batching, so per-batch
    results (e.g. cached features) can be keyed by the batch's origins.

    Examples
    --------
    >>> tile_batches((100, 120), 64, 16, 4)
    [[(0, 0), (0, 28), (0, 56), (36, 0)], [(36, 28), (36, 56)]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ys, xs = tile_starts(shape[0], tile, overlap), tile_starts(shape[1], tile, overlap)
    order = [(int(y), int(x)) for y in ys for x in xs]
    return [order[i: i + batch_size] for i in range(0, len(order), batch_size)]


TileFn = Callable[[np.ndarray, Sequence[tuple[int, int]]], tuple[np.ndarray, np.ndarray]]


def predict_tiled(
    image: np.ndarray,
    fn: TileFn,
    *,
    tile: int,
    overlap: int,
    n_maps: int,
    on_band: Callable[[int, np.ndarray], None],
    batch_size: int = 4,
    progress: bool = False,
    desc: str = "tiles",
) -> np.ndarray | None:
    """Run ``fn`` over overlapping tiles of ``image`` and stream the blended maps.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, ...)`` array (usually RGB uint8); tiles are cut from it by slicing.
    fn : callable
        ``fn(tiles, origins) -> (maps, scalars)``: ``tiles`` ``(B, tile, tile, ...)``,
        ``origins`` the ``(y, x)`` of each tile; ``maps`` ``(B, n_maps, tile, tile)``
        float, ``scalars`` ``(B, S)`` float or ``None``.
    tile, overlap : int
        Tile side and minimum overlap between neighbours, in pixels.
    n_maps : int
        Number of map channels ``fn`` returns.
    on_band : callable
        ``on_band(y_start, band)`` receives the blended rows ``band`` ``(n_maps, h, W)``
        in order, each row exactly once.
    batch_size : int
        Tiles per call of ``fn``.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    numpy.ndarray or None
        ``(S,)`` maximum over tiles of ``scalars`` (``None`` when ``fn`` returns none).
    """
    height, width = image.shape[:2]
    batches = tile_batches((height, width), tile, overlap, batch_size)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    wy = dict(zip(ys.tolist(), axis_weights(ys, tile, height)))
    wx = dict(zip(xs.tolist(), axis_weights(xs, tile, width)))
    single = len(ys) == 1 and len(xs) == 1  # one tile: nothing to blend
    blender = None if single else RowBlender(n_maps, width)
    scal = None
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ys) * len(xs), desc=desc, unit="tile")
    try:
        for b, origins in enumerate(batches):
            tiles = np.stack([extract_tile(image, y, x, tile) for y, x in origins])
            maps, scalars = fn(tiles, origins)
            if maps.shape[:2] != (len(origins), n_maps):
                raise RuntimeError(f"fn returned maps of shape {maps.shape}, expected ({len(origins)}, {n_maps}, ...)")
            if scalars is not None:
                s = np.asarray(scalars, np.float32).max(0)
                scal = s if scal is None else np.maximum(scal, s)
            if single:
                on_band(0, np.asarray(maps[0, :, :height, :width], np.float32))
                continue
            for k, (y, x) in enumerate(origins):
                weight = np.outer(wy[y], wx[x])
                h, w = weight.shape
                blender.add(y, x, maps[k, :, :h, :w], weight)
            y_done = batches[b + 1][0][0] if b + 1 < len(batches) else height
            if y_done > blender.y0:
                on_band(*blender.pop(y_done))
            if bar is not None:
                bar.update(len(origins))
    finally:
        if bar is not None:
            bar.close()
    return scal


class InstanceStitcher:
    """Block-wise watershed over streamed probability/distance rows, written into ``out``.

    Rows arrive in order (:meth:`push`). Each horizontal strip of ``strip`` rows is cut into
    column blocks of ``block`` columns; every block is labelled on a window that adds
    ``margin`` pixels of context on each side, and only the objects whose centroid lies in
    the block's core are written (whole, including their part in the margin, on pixels
    still unlabelled). Every object is thus labelled once, by the block owning its
    centroid, and the working memory is ``O((strip + 2·margin) × W)`` for the row buffer
    plus ``O((strip + 2·margin) × (block + 2·margin))`` for the watershed.

    Parameters
    ----------
    out : numpy.ndarray
        ``(H, W)`` ``int32`` array (zeros) that receives the instance ids ``1..N``.
    strip : int
        Rows of the core of each strip.
    margin : int
        Pixels of context around each block core; must exceed the largest object's extent.
    block : int, optional
        Columns of the core of each block (default: ``strip``).
    **kwargs
        Passed to :func:`~xpath.segmentation.postprocess.instances_from_maps`
        (``threshold``, ``marker_threshold``, ``min_area_um2``, ``mpp``, ...).

    Examples
    --------
    >>> out = np.zeros((6, 4), np.int32)
    >>> st = InstanceStitcher(out, strip=2, margin=2)
    >>> prob = np.zeros((6, 4), np.float32); prob[1:5, 1:3] = 1
    >>> dist = np.zeros_like(prob); dist[2:4, 1:3] = 1
    >>> st.push(0, prob[:3], dist[:3]); st.push(3, prob[3:], dist[3:]); _ = st.finish()
    >>> int(out.max())  # one object across the strip borders
    1
    """

    def __init__(self, out: np.ndarray, *, strip: int, margin: int, block: int | None = None, **kwargs) -> None:
        if out.ndim != 2 or out.dtype != np.int32:
            raise ValueError(f"out must be a (H, W) int32 array, got shape {out.shape} dtype {out.dtype}")
        block = strip if block is None else block
        if strip < 1 or margin < 0 or block < 1:
            raise ValueError(f"strip and block must be >= 1 and margin >= 0, got strip={strip}, "
                             f"block={block}, margin={margin}")
        self.out, self.strip, self.margin, self.block = out, int(strip), int(margin), int(block)
        self.kwargs = kwargs
        self.height, self.width = out.shape
        self._y0 = 0
        self._prob = np.zeros((0, self.width), np.float32)
        self._dist = np.zeros((0, self.width), np.float32)
        self._core = 0
        self.n_objects = 0

    def push(self, y: int, prob: np.ndarray, dist: np.ndarray) -> None:
        """Append the rows ``[y, y + len(prob))`` of the probability and distance maps."""
        if y != self._y0 + self._prob.shape[0]:
            raise ValueError(f"rows must arrive in order: expected y={self._y0 + self._prob.shape[0]}, got {y}")
        self._prob = np.concatenate([self._prob, np.asarray(prob, np.float32)], 0)
        self._dist = np.concatenate([self._dist, np.asarray(dist, np.float32)], 0)
        self._run()

    def finish(self) -> np.ndarray:
        """Label the remaining strips (all rows must have been pushed); returns ``out``."""
        have = self._y0 + self._prob.shape[0]
        if have != self.height:
            raise ValueError(f"finish() needs all {self.height} rows, got {have}")
        self._run()
        return self.out

    def _run(self) -> None:
        have = self._y0 + self._prob.shape[0]
        while self._core < self.height:
            c0, c1 = self._core, min(self._core + self.strip, self.height)
            need = min(c1 + self.margin, self.height)
            if have < need:
                return
            w0 = max(c0 - self.margin, self._y0)
            r0, r1 = w0 - self._y0, need - self._y0
            for b0 in range(0, self.width, self.block):
                b1 = min(b0 + self.block, self.width)
                x0, x1 = max(b0 - self.margin, 0), min(b1 + self.margin, self.width)
                labels = instances_from_maps(self._prob[r0:r1, x0:x1], self._dist[r0:r1, x0:x1], **self.kwargs)
                self._keep(labels, w0, x0, (c0, c1), (b0, b1))
            self._core = c1
            drop = max(0, c1 - self.margin - self._y0)
            if drop:
                self._prob, self._dist = self._prob[drop:].copy(), self._dist[drop:].copy()
                self._y0 += drop

    def _keep(self, labels: np.ndarray, y0: int, x0: int, rows: tuple[int, int], cols: tuple[int, int]) -> None:
        """Write the objects of ``labels`` (window at ``(y0, x0)``) whose centroid lies in the core."""
        n = int(labels.max())
        if n == 0:
            return
        h, w = labels.shape
        flat = labels.ravel()
        area = np.bincount(flat, minlength=n + 1).astype(np.float64)
        cy = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=n + 1)
        cx = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=n + 1)
        cy = cy / np.maximum(area, 1) + y0
        cx = cx / np.maximum(area, 1) + x0
        keep = (cy >= rows[0]) & (cy < rows[1]) & (cx >= cols[0]) & (cx < cols[1]) & (area > 0)
        keep[0] = False
        n_keep = int(keep.sum())
        if n_keep == 0:
            return
        lut = np.zeros(n + 1, np.int32)
        lut[keep] = np.arange(self.n_objects + 1, self.n_objects + 1 + n_keep, dtype=np.int32)
        new = lut[labels]
        target = self.out[y0: y0 + h, x0: x0 + w]
        write = (new > 0) & (target == 0)
        target[write] = new[write]
        self.n_objects += n_keep
