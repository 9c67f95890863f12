"""Objects across tile borders: the block-wise watershed over streamed rows, ownership by centroid, merging.

:func:`~xpath.segmentation.inference.tiling.predict_tiled` hands over blended rows panel by
panel; :class:`InstanceStitcher` builds the instances on them. It runs the watershed
(:func:`~xpath.segmentation.inference.postprocess.instances_from_maps`) on blocks of each
horizontal strip of a panel with ``margin`` pixels of context on every side (panels emit a
``halo`` of that many columns beyond their core), and keeps from each block only the
objects whose centroid lies in the block's core. An object that straddles a tile, panel,
strip or block border is therefore labelled once, whole, by the one block that owns its
centroid; the margin must exceed the largest object's extent.
"""

from __future__ import annotations

import numpy as np

from .postprocess import instances_from_maps

__all__ = ["InstanceStitcher", "centroids", "core_ids", "merge_objects"]


class InstanceStitcher:
    """Block-wise watershed over streamed probability/distance rows, written into ``out``.

    Rows arrive in order (:meth:`push`), panel by panel (:func:`~xpath.segmentation.inference.tiling.plan_panels`). Each
    horizontal strip of ``strip`` rows of a panel's core is cut into column blocks of
    ``block`` columns; every block is labelled on a window that adds ``margin`` pixels of
    context on each side, and only the objects whose centroid lies in the block's core are
    written (whole, including their part in the margin, on pixels still unlabelled). Every
    object is thus labelled once, by the block owning its centroid, and the working memory
    is ``O((strip + 2·margin) × panel width)`` for the row buffer plus
    ``O((strip + 2·margin) × (block + 2·margin))`` for the watershed.

    Parameters
    ----------
    out : numpy.ndarray
        ``(H, W)`` ``int32`` array (zeros) that receives the instance ids ``1..N``.
    strip : int
        Rows of the core of each strip.
    margin : int
        Pixels of context around each block core; must exceed the largest object's extent
        (and panels need a ``halo`` of at least ``margin``).
    block : int, optional
        Columns of the core of each block (default: ``strip``).
    n_sums : int
        Channels of extra maps pushed with the rows (``sums=`` of :meth:`push`) whose values are
        summed over the pixels each object is written on (:attr:`area`, :attr:`sums`): e.g. the
        nucleus-type probabilities voted per nucleus (:mod:`~xpath.segmentation.inference.nucleus_types`),
        computed while the object's rows are in memory, so no full-size copy of the maps is kept.
    sum_dtype : numpy dtype, optional
        Round the values to this dtype before summing (e.g. ``float16``, the precision in which
        probability maps are returned, so the sums equal those over the returned maps); only the
        pixels of objects are rounded. Default: the values as pushed.
    **kwargs
        Passed to :func:`~xpath.segmentation.inference.postprocess.instances_from_maps`
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

    def __init__(self, out: np.ndarray, *, strip: int, margin: int, block: int | None = None, n_sums: int = 0,
                 sum_dtype=None, **kwargs) -> None:
        if out.ndim != 2 or out.dtype != np.int32:
            raise ValueError(f"out must be a (H, W) int32 array, got shape {out.shape} dtype {out.dtype}")
        block = strip if block is None else block
        if strip < 1 or margin < 0 or block < 1:
            raise ValueError(f"strip and block must be >= 1 and margin >= 0, got strip={strip}, "
                             f"block={block}, margin={margin}")
        self.out, self.strip, self.margin, self.block = out, int(strip), int(margin), int(block)
        if n_sums < 0:
            raise ValueError(f"n_sums must be >= 0, got {n_sums}")
        self.kwargs, self.n_sums = kwargs, int(n_sums)
        self.sum_dtype = None if sum_dtype is None else np.dtype(sum_dtype)
        self.height, self.width = out.shape
        self.n_objects = 0
        self._area: list[np.ndarray] = [np.zeros(1, np.int64)]  # per kept object, in id order (id 0 first)
        self._sums: list[np.ndarray] = [np.zeros((1, self.n_sums))]
        self._start_panel(0, (0, self.width))

    def _start_panel(self, x: int, core: tuple[int, int]) -> None:
        self._x, self._panel_core = int(x), (int(core[0]), int(core[1]))
        self._y0 = 0
        self._rows = None  # (2 + n_sums, capacity, width) float32: probability, distance, sums; rows reused
        self._n = 0  # rows held, from image row _y0
        self._core = 0

    def _rows_have(self) -> int:
        return self._y0 + self._n

    def push(self, y: int, prob: np.ndarray, dist: np.ndarray, *, x: int = 0,
             core: tuple[int, int] | None = None, sums: np.ndarray | None = None) -> None:
        """Append the rows ``[y, y + len(prob))`` of the probability and distance maps.

        ``x``: the image column of ``prob[:, 0]``; ``core``: the columns ``[a, b)`` this
        panel answers for (default: all columns given). A new ``(x, core)`` starts a new
        panel, after the previous one got all its rows. ``sums``: ``(n_sums, h, w)`` maps
        to sum per object.
        """
        prob, dist = np.asarray(prob, np.float32), np.asarray(dist, np.float32)
        if self.n_sums:
            if sums is None or sums.shape != (self.n_sums, *prob.shape):
                raise ValueError(f"sums must have shape {(self.n_sums, *prob.shape)}, got "
                                 f"{None if sums is None else sums.shape}")
        elif sums is not None:
            raise ValueError("sums given to a stitcher made with n_sums=0")
        core = (x, x + prob.shape[1]) if core is None else core
        if (x, tuple(core)) != (self._x, self._panel_core):
            if self._rows_have() not in (0, self.height):
                raise ValueError(f"a new panel started before the panel at columns {self._panel_core} got all "
                                 f"{self.height} rows (it has {self._rows_have()})")
            self._start_panel(x, core)
        if y != self._rows_have():
            raise ValueError(f"rows must arrive in order: expected y={self._rows_have()}, got {y}")
        h, w = prob.shape
        if self._rows is None or self._rows.shape[2] != w or self._n + h > self._rows.shape[1]:
            grown = np.empty((2 + self.n_sums, max(self._n + h, 2 * self._n, self.strip + 2 * self.margin), w),
                             np.float32)
            if self._rows is not None and self._n:
                grown[:, : self._n] = self._rows[:, : self._n]
            self._rows = grown
        self._rows[0, self._n: self._n + h] = prob
        self._rows[1, self._n: self._n + h] = dist
        if sums is not None:
            self._rows[2:, self._n: self._n + h] = sums
        self._n += h
        self._run()

    @property
    def area(self) -> np.ndarray:
        """``(N + 1,)`` pixels each object was written on (index = id; 0 for the background)."""
        return np.concatenate(self._area)

    @property
    def sums(self) -> np.ndarray:
        """``(N + 1, n_sums)`` float64 sums of the ``sums`` maps over each object's pixels (row 0: zeros)."""
        return np.concatenate(self._sums)

    def finish(self) -> np.ndarray:
        """Label the remaining strips (all rows must have been pushed); returns ``out``."""
        have = self._rows_have()
        if have != self.height:
            raise ValueError(f"finish() needs all {self.height} rows, got {have}")
        self._run()
        return self.out

    def _run(self) -> None:
        have = self._rows_have()
        width = self._rows.shape[2]
        a, b = self._panel_core
        while self._core < self.height:
            c0, c1 = self._core, min(self._core + self.strip, self.height)
            need = min(c1 + self.margin, self.height)
            if have < need:
                return
            w0 = max(c0 - self.margin, self._y0)
            r0, r1 = w0 - self._y0, need - self._y0
            for b0 in range(a, b, self.block):
                b1 = min(b0 + self.block, b)
                x0 = max(b0 - self.margin, self._x)
                x1 = min(b1 + self.margin, self._x + width)
                window = self._rows[:, r0:r1, x0 - self._x: x1 - self._x]
                prob = window[0]
                if "foreground" not in self.kwargs and not (prob > self.kwargs.get("threshold", 0.5)).any():
                    continue  # no foreground (e.g. glass, tiles not run): no objects, skip the watershed
                labels = instances_from_maps(prob, window[1], **self.kwargs)
                self._keep(labels, w0, x0, (c0, c1), (b0, b1), window[2:] if self.n_sums else None)
            self._core = c1
            drop = max(0, c1 - self.margin - self._y0)
            if drop:
                rest = self._n - drop
                self._rows[:, :rest] = self._rows[:, drop: self._n]  # overlapping move: numpy buffers it
                self._n = rest
                self._y0 += drop

    def _keep(self, labels: np.ndarray, y0: int, x0: int, rows: tuple[int, int], cols: tuple[int, int],
              extra: np.ndarray | None = None) -> None:
        """Write the objects of ``labels`` (window at ``(y0, x0)``) whose centroid lies in the core."""
        ids = core_ids(labels, rows, cols, origin=(y0, x0))
        if len(ids):
            h, w = labels.shape
            first = self.n_objects + 1
            pasted, n_kept = merge_objects(self.out[y0: y0 + h, x0: x0 + w], labels, ids, first_id=first)
            self.n_objects += n_kept
            if n_kept:
                self._add_sums(pasted, first, n_kept, extra)

    def _add_sums(self, pasted: np.ndarray, first: int, n_kept: int, extra: np.ndarray | None) -> None:
        """Pixel counts and ``extra`` sums of the objects just written (ids ``first ..``), in row-major
        pixel order (the order of a ``bincount`` over the whole finished map: the same float64 sums)."""
        flat = pasted.ravel()
        nz = np.flatnonzero(flat)
        idx = flat[nz] - first
        self._area.append(np.bincount(idx, minlength=n_kept))
        sums = np.zeros((n_kept, self.n_sums))
        for k in range(self.n_sums):
            values = extra[k].ravel()[nz]
            if self.sum_dtype is not None:
                values = values.astype(self.sum_dtype)
            sums[:, k] = np.bincount(idx, weights=values.astype(np.float64), minlength=n_kept)
        self._sums.append(sums)


def centroids(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ids present in ``labels`` and their centroids ``(row, col)``, in pixels of ``labels``.

    Vectorised with ``bincount`` over the labelled pixels only (most of a window is background).

    Examples
    --------
    >>> lab = np.zeros((4, 6), np.int32); lab[0:2, 0:2] = 3; lab[3, 3:6] = 7
    >>> ids, cy, cx = centroids(lab)
    >>> ids.tolist(), cy.tolist(), cx.tolist()
    ([3, 7], [0.5, 3.0], [0.5, 4.0])
    """
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    if not nz.size:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    lab = flat[nz]
    n = int(lab.max()) + 1
    counts = np.bincount(lab, minlength=n)
    cy = np.bincount(lab, weights=nz // labels.shape[1], minlength=n)
    cx = np.bincount(lab, weights=nz % labels.shape[1], minlength=n)
    ids = np.flatnonzero(counts)
    ids = ids[ids > 0]
    return ids, cy[ids] / counts[ids], cx[ids] / counts[ids]


def core_ids(labels: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], *,
             origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Ids of the objects a window owns: those whose centroid lies in its core ``rows × cols``.

    ``rows`` ``[r0, r1)`` and ``cols`` ``[c0, c1)`` are in the coordinates of the image that
    the window ``labels`` sits in at ``origin`` ``(y, x)``. When the cores of a set of windows
    partition the image, every object is owned by exactly one window.

    Examples
    --------
    >>> lab = np.zeros((4, 6), np.int32); lab[0:2, 0:2] = 3; lab[3, 3:6] = 7
    >>> core_ids(lab, (0, 4), (0, 3)).tolist(), core_ids(lab, (10, 14), (3, 6), origin=(10, 0)).tolist()
    ([3], [7])
    """
    ids, cy, cx = centroids(labels)
    cy, cx = cy + origin[0], cx + origin[1]
    return ids[(cy >= rows[0]) & (cy < rows[1]) & (cx >= cols[0]) & (cx < cols[1])].astype(np.int64)


def merge_objects(target: np.ndarray, labels: np.ndarray, ids: np.ndarray | None = None, *, first_id: int,
                  min_free: float = 0.0) -> tuple[np.ndarray, int]:
    """Write objects of ``labels`` into ``target`` on the pixels that ``target`` still has at 0.

    The merge rule of every place that adds objects to a label map holding others (the
    stitcher's blocks, a slide's windows, one prompt's objects after another's): an object
    fills only free pixels, and one with fewer than ``min_free`` of its pixels free, or none,
    is dropped: it is an object ``target`` holds already, seen again. The objects kept are
    numbered ``first_id, first_id + 1, ...`` in the order of their ids in ``labels``.

    Parameters
    ----------
    target : numpy.ndarray
        ``(H, W)`` integer label map (0 = free), written in place (a view works).
    labels : numpy.ndarray
        ``(H, W)`` integer labels of the objects to add.
    ids : numpy.ndarray, optional
        Ids of ``labels`` to add (default: every object).
    first_id : int
        New id of the first object kept.
    min_free : float
        Fraction of an object's pixels that must be free for it to be kept.

    Returns
    -------
    pasted : numpy.ndarray
        ``(H, W)`` int32: the new ids on the pixels written, 0 elsewhere.
    n_kept : int
        Objects kept (new ids ``first_id .. first_id + n_kept - 1``).

    Examples
    --------
    >>> out = np.zeros((1, 6), np.int32); out[0, :2] = 1
    >>> new = np.array([[5, 5, 0, 6, 6, 6]])
    >>> pasted, n = merge_objects(out, new, first_id=2, min_free=0.5)
    >>> out.tolist(), n
    ([[1, 1, 0, 2, 2, 2]], 1)
    """
    from ._label_kernels import count_free, paste_free

    if labels.shape != target.shape:
        raise ValueError(f"labels have shape {labels.shape}, the target {target.shape}")
    target, labels = np.asarray(target), np.asarray(labels)  # a memory-mapped view: a plain view of it
    n = int(labels.max(initial=0)) + 1
    chosen = np.ones(n, bool)
    if ids is not None:
        chosen[:] = False
        chosen[np.asarray(ids, np.int64)] = True
    chosen[0] = False
    total, n_free = count_free(target, labels, chosen, n)
    keep = chosen & (n_free > 0) & (n_free >= min_free * total)
    kept = np.flatnonzero(keep)
    lut = np.zeros(n, np.int32)
    lut[kept] = np.arange(first_id, first_id + len(kept), dtype=np.int32)
    return paste_free(target, labels, lut), len(kept)
