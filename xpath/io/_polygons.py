"""Exact polygons of label images (pixel-edge tracing) and their inverse (scan-line filling).

Every object of a label image is traced along pixel edges, so a polygon encloses exactly
the pixel centres of its object: filling the polygon gives the object back, pixel for
pixel. Objects are 4-connected (diagonal contacts make separate polygons); holes are
kept. Both directions are numba kernels over the whole image: no Python loop over objects.

Coordinates are ``(x, y)`` pixel corners: the pixel ``(row, col)`` spans
``x ∈ [col, col + 1]``, ``y ∈ [row, row + 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .._types import check_labels

__all__ = ["Rings", "fill_rings", "trace_rings"]

# Directions of a walk along pixel edges, (d_row, d_col): right, down, left, up.
_DR = np.array([0, 1, 0, -1], np.int64)
_DC = np.array([1, 0, -1, 0], np.int64)


@numba.njit(cache=True, inline="always")
def _edge_owner(lab, r, c, d):
    """Label whose boundary leaves vertex ``(r, c)`` in direction ``d`` (object on the right), or 0."""
    h, w = lab.shape
    if d == 0:  # right: the pixel below-right of the vertex, (r, c)
        if c >= w or r >= h:
            return 0
        own = lab[r, c]
        other = lab[r - 1, c] if r > 0 else 0
    elif d == 1:  # down: pixel (r, c - 1)
        if r >= h or c <= 0:
            return 0
        own = lab[r, c - 1]
        other = lab[r, c] if c < w else 0
    elif d == 2:  # left: pixel (r - 1, c - 1)
        if c <= 0 or r <= 0:
            return 0
        own = lab[r - 1, c - 1]
        other = lab[r, c - 1] if r < h else 0
    else:  # up: pixel (r - 1, c)
        if r <= 0 or c >= w:
            return 0
        own = lab[r - 1, c]
        other = lab[r - 1, c - 1] if c > 0 else 0
    if own != 0 and own != other:
        return own
    return 0


@numba.njit(cache=True, inline="always")
def _uniform_corner(lab, r, c):
    """Whether the (up to four) pixels around vertex ``(r, c)`` hold one label (0 off the image): no edge
    leaves a vertex in the background or inside an object, which is most of them."""
    h, w = lab.shape
    a = lab[r - 1, c - 1] if r > 0 and c > 0 else 0
    b = lab[r - 1, c] if r > 0 and c < w else 0
    if a != b:
        return False
    e = lab[r, c - 1] if r < h and c > 0 else 0
    f = lab[r, c] if r < h and c < w else 0
    return a == e and a == f


@numba.njit(cache=True)
def _owner_pixel(r, c, d):
    if d == 0:
        return r, c
    if d == 1:
        return r, c - 1
    if d == 2:
        return r - 1, c - 1
    return r - 1, c


@numba.njit(cache=True)
def _count_edges(lab):
    h, w = lab.shape
    n = 0
    for r in range(h + 1):
        for c in range(w + 1):
            if _uniform_corner(lab, r, c):
                continue
            for d in range(4):
                if _edge_owner(lab, r, c, d) != 0:
                    n += 1
    return n


@numba.njit(cache=True)
def _trace(lab, n_edges, dr, dc):
    """Trace every boundary ring; returns per-ring label, owner pixel, vertex offsets and corners."""
    h, w = lab.shape
    visited = np.zeros((h + 1, w + 1), np.uint8)
    xy = np.empty((n_edges, 2), np.int32)
    ring_label = np.empty(n_edges // 4 + 1, np.int32)
    ring_pixel = np.empty((n_edges // 4 + 1, 2), np.int64)
    offsets = np.zeros(n_edges // 4 + 2, np.int64)
    n_rings = 0
    n_xy = 0
    for r0 in range(h + 1):
        for c0 in range(w + 1):
            if _uniform_corner(lab, r0, c0):
                continue
            for d0 in range(4):
                if visited[r0, c0] & (1 << d0):
                    continue
                lab0 = _edge_owner(lab, r0, c0, d0)
                if lab0 == 0:
                    continue
                pr, pc = _owner_pixel(r0, c0, d0)
                ring_label[n_rings] = lab0
                ring_pixel[n_rings, 0] = pr
                ring_pixel[n_rings, 1] = pc
                xy[n_xy, 0] = c0
                xy[n_xy, 1] = r0
                n_xy += 1
                r, c, d = r0, c0, d0
                while True:
                    visited[r, c] |= np.uint8(1 << d)
                    r += dr[d]
                    c += dc[d]
                    # Prefer a right turn, then straight, then left: hugs the object (4-connectivity).
                    nd = -1
                    for turn in (1, 0, 3):
                        cand = (d + turn) % 4
                        if _edge_owner(lab, r, c, cand) == lab0:
                            nd = cand
                            break
                    if visited[r, c] & (1 << nd):
                        break  # back at the start edge
                    if nd != d:
                        xy[n_xy, 0] = c
                        xy[n_xy, 1] = r
                        n_xy += 1
                    d = nd
                n_rings += 1
                offsets[n_rings] = n_xy
    return ring_label[:n_rings], ring_pixel[:n_rings], offsets[: n_rings + 1], xy[:n_xy]


@dataclass(frozen=True)
class Rings:
    """Boundary rings of a label image.

    Attributes
    ----------
    label : numpy.ndarray
        ``(R,)`` int32 object id of each ring.
    component : numpy.ndarray
        ``(R,)`` int64 id of the 4-connected component each ring bounds (one polygon each).
    exterior : numpy.ndarray
        ``(R,)`` bool: outer ring (counter-clockwise in ``(x, y)`` numbers, positive area)
        or hole (clockwise).
    offsets : numpy.ndarray
        ``(R + 1,)`` int64: ring ``i`` has corners ``xy[offsets[i]:offsets[i + 1]]``.
    xy : numpy.ndarray
        ``(V, 2)`` int32 ``(x, y)`` pixel corners, without the repeated closing vertex.
    """

    label: np.ndarray
    component: np.ndarray
    exterior: np.ndarray
    offsets: np.ndarray
    xy: np.ndarray

    def __len__(self) -> int:
        return len(self.label)

    def ring(self, i: int) -> np.ndarray:
        """Corners of ring ``i`` as ``(n, 2)`` ``(x, y)``."""
        return self.xy[self.offsets[i] : self.offsets[i + 1]]


def trace_rings(labels: np.ndarray) -> Rings:
    """Trace the exact pixel-edge boundary of every object of a label image.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` integer label image, 0 = background.

    Returns
    -------
    Rings
        Rings ordered by their top-left corner (raster order); only corners are kept
        (no collinear vertices).

    Examples
    --------
    >>> lab = np.zeros((4, 4), np.int32); lab[1:3, 1:4] = 7
    >>> rings = trace_rings(lab)
    >>> rings.label.tolist(), rings.ring(0).tolist()
    ([7], [[1, 1], [4, 1], [4, 3], [1, 3]])
    """
    from skimage.measure import label as connected

    labels = check_labels(labels)
    n_edges = _count_edges(labels)
    ring_label, ring_pixel, offsets, xy = _trace(labels, n_edges, _DR, _DC)
    area = _signed_areas(offsets, xy)
    if (area > 0).all():  # no holes (most nuclei): each ring bounds a component of its own, no labelling pass
        component = np.arange(1, len(ring_label) + 1, dtype=np.int64)
    else:
        comp = connected(labels, connectivity=1, background=0)
        component = comp[ring_pixel[:, 0], ring_pixel[:, 1]].astype(np.int64)
    return Rings(ring_label, component, area > 0, offsets, xy)


def _signed_areas(offsets: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Shoelace area of each ring (positive for outer rings), vectorised over all rings."""
    if len(offsets) < 2:
        return np.zeros(0)
    x = xy[:, 0].astype(np.float64)
    y = xy[:, 1].astype(np.float64)
    nxt = np.arange(1, len(xy) + 1)
    ring_of = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    last = offsets[1:] - 1
    nxt[last] = offsets[:-1]  # wrap each ring onto its own first vertex
    cross = x * y[nxt] - x[nxt] * y
    return np.bincount(ring_of, weights=cross, minlength=len(offsets) - 1) / 2.0


@numba.njit(cache=True)
def _fill(out, ring_value, offsets, xs, ys):
    """Even–odd scan-line fill of each ring group; pixel (r, c) is inside if its centre is."""
    h, w = out.shape
    n_rings = len(ring_value)
    i = 0
    crossings = np.empty(64, np.float64)
    while i < n_rings:
        j = i
        while j < n_rings and ring_value[j] == ring_value[i]:
            j += 1
        value = ring_value[i]
        y_min = np.inf
        y_max = -np.inf
        n_vert = 0
        for k in range(offsets[i], offsets[j]):
            y_min = min(y_min, ys[k])
            y_max = max(y_max, ys[k])
            n_vert += 1
        if crossings.shape[0] < n_vert:
            crossings = np.empty(n_vert, np.float64)
        r_start = max(0, int(np.ceil(y_min - 0.5)))
        r_stop = min(h - 1, int(np.floor(y_max - 0.5)))
        for r in range(r_start, r_stop + 1):
            yc = r + 0.5
            n_cross = 0
            for g in range(i, j):
                a, b = offsets[g], offsets[g + 1]
                for k in range(a, b):
                    k2 = k + 1 if k + 1 < b else a
                    y1, y2 = ys[k], ys[k2]
                    if (y1 <= yc) != (y2 <= yc):
                        x1, x2 = xs[k], xs[k2]
                        crossings[n_cross] = x1 + (yc - y1) * (x2 - x1) / (y2 - y1)
                        n_cross += 1
            crossings[:n_cross].sort()
            for p in range(0, n_cross - 1, 2):
                c0 = max(0, int(np.ceil(crossings[p] - 0.5)))
                c1 = min(w - 1, int(np.ceil(crossings[p + 1] - 0.5)) - 1)
                for c in range(c0, c1 + 1):
                    out[r, c] = value
        i = j
    return out


def fill_rings(
    shape: tuple[int, int],
    values: np.ndarray,
    offsets: np.ndarray,
    xy: np.ndarray,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Rasterise polygons: every pixel whose centre lies inside is set to the polygon's value.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the output.
    values : numpy.ndarray
        ``(R,)`` integer value of each ring; consecutive rings with the same value form one
        polygon (its exterior and holes, even–odd rule).
    offsets : numpy.ndarray
        ``(R + 1,)`` ring ``i`` is ``xy[offsets[i]:offsets[i + 1]]``.
    xy : numpy.ndarray
        ``(V, 2)`` float ``(x, y)`` vertices in pixel-corner coordinates.
    out : numpy.ndarray, optional
        ``(H, W)`` int32 image to draw into (later polygons overwrite earlier ones).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32.
    """
    values = np.asarray(values, np.int64)
    offsets = np.asarray(offsets, np.int64)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    if len(offsets) != len(values) + 1:
        raise ValueError(f"offsets must have len(values) + 1 = {len(values) + 1} entries, got {len(offsets)}")
    if out is None:
        out = np.zeros(tuple(int(s) for s in shape[:2]), np.int32)
    if len(values):
        _fill(out, values, offsets, np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1]))
    return out
