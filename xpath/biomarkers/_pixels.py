"""Objects of a label image as a CSR list of their pixels (the layout every per-object kernel uses).

One pass over the label image finds each id's pixel count and bounding box; a second pass
(a numba kernel over the bounding boxes) writes each object's pixel coordinates into one
contiguous block, in row-major order. Per-object features are then segment reductions
(``numpy.add.reduceat``/``bincount``) or numba loops over the segments: no Python loop over
objects anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["ObjectPixels", "object_pixels"]


@dataclass(frozen=True)
class ObjectPixels:
    """Pixels of every object of a label image, grouped by object.

    Attributes
    ----------
    ids : numpy.ndarray
        ``(N,)`` ``int32`` object ids, ascending.
    offsets : numpy.ndarray
        ``(N + 1,)`` ``int64``; object ``i`` owns ``rows[offsets[i]:offsets[i + 1]]``.
    rows, cols : numpy.ndarray
        ``(P,)`` ``int32`` pixel coordinates, row-major within each object.
    bbox : numpy.ndarray
        ``(N, 4)`` ``int32`` ``(row_min, col_min, row_max, col_max)``, max exclusive
        (scikit-image's ``bbox`` convention).
    shape : tuple of int
        ``(H, W)`` of the label image.
    """

    ids: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    bbox: np.ndarray
    shape: tuple

    @property
    def n(self) -> int:
        return int(self.ids.size)

    @property
    def counts(self) -> np.ndarray:
        """``(N,)`` pixel count of each object."""
        return np.diff(self.offsets)

    @property
    def group(self) -> np.ndarray:
        """``(P,)`` object index (0..N-1) of each pixel."""
        return np.repeat(np.arange(self.n, dtype=np.int64), self.counts)


@numba.njit(cache=True)
def _bboxes(labels, max_id):
    h, w = labels.shape
    count = np.zeros(max_id + 1, np.int64)
    r0 = np.full(max_id + 1, h, np.int32)
    c0 = np.full(max_id + 1, w, np.int32)
    r1 = np.zeros(max_id + 1, np.int32)
    c1 = np.zeros(max_id + 1, np.int32)
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v == 0:
                continue
            count[v] += 1
            r0[v] = min(r0[v], r)
            r1[v] = max(r1[v], r + 1)
            c0[v] = min(c0[v], c)
            c1[v] = max(c1[v], c + 1)
    return count, r0, c0, r1, c1


@numba.njit(cache=True)
def _gather(labels, ids, bbox, offsets, rows, cols):
    for i in range(ids.size):
        k = offsets[i]
        v = ids[i]
        for r in range(bbox[i, 0], bbox[i, 2]):
            for c in range(bbox[i, 1], bbox[i, 3]):
                if labels[r, c] == v:
                    rows[k] = r
                    cols[k] = c
                    k += 1


def object_pixels(labels: np.ndarray) -> ObjectPixels:
    """Group the pixels of a validated ``(H, W)`` ``int32`` label image by object.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` ``int32``, ``0`` = background (validate with ``xpath.check_labels`` first).

    Returns
    -------
    ObjectPixels

    Examples
    --------
    >>> px = object_pixels(np.array([[0, 3], [3, 7]], np.int32))
    >>> px.ids.tolist(), px.counts.tolist(), px.bbox.tolist()
    ([3, 7], [2, 1], [[0, 0, 2, 2], [1, 1, 2, 2]])
    """
    labels = np.ascontiguousarray(labels, dtype=np.int32)
    max_id = int(labels.max()) if labels.size else 0
    count, r0, c0, r1, c1 = _bboxes(labels, max_id)
    ids = np.flatnonzero(count[1:]).astype(np.int32) + 1
    counts = count[ids]
    offsets = np.zeros(ids.size + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    bbox = np.stack([r0[ids], c0[ids], r1[ids], c1[ids]], 1).astype(np.int32).reshape(-1, 4)
    rows = np.empty(int(offsets[-1]), np.int32)
    cols = np.empty(int(offsets[-1]), np.int32)
    _gather(labels, ids, bbox, offsets, rows, cols)
    return ObjectPixels(ids, offsets, rows, cols, bbox, tuple(labels.shape))
