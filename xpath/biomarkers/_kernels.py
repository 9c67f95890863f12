"""numba kernels over the objects of a label image (CSR pixel lists from :mod:`._pixels`).

Each kernel loops over objects *inside* compiled code; Python never loops over objects.
Coordinates: a pixel ``(r, c)`` is the unit square ``[r, r + 1] x [c, c + 1]`` in *corner*
coordinates and has its centre at ``(r, c)`` in *centre* coordinates (scikit-image's).
"""

from __future__ import annotations

import math

import numba
import numpy as np

# scikit-image's perimeter weights (``skimage.measure.perimeter``, 4-connected border).
_PERIM_W = np.zeros(50, np.float64)
_PERIM_W[np.array([5, 7, 15, 17, 25, 27])] = 1.0
_PERIM_W[np.array([21, 33])] = math.sqrt(2.0)
_PERIM_W[np.array([13, 23])] = (1.0 + math.sqrt(2.0)) / 2.0


@numba.njit(cache=True, inline="always")
def _same(labels, r, c, v):
    h, w = labels.shape
    return 0 <= r < h and 0 <= c < w and labels[r, c] == v


@numba.njit(cache=True, inline="always")
def _is_border(labels, r, c, v):
    return not (
        _same(labels, r - 1, c, v) and _same(labels, r + 1, c, v)
        and _same(labels, r, c - 1, v) and _same(labels, r, c + 1, v)
    )


@numba.njit(cache=True)
def perimeter_kernel(labels, ids, offsets, rows, cols, weights):
    """Perimeter in px of each object, identical to ``skimage.measure.perimeter(mask, 4)``."""
    n = ids.size
    out = np.zeros(n, np.float64)
    for i in range(n):
        v = ids[i]
        total = 0.0
        for k in range(offsets[i], offsets[i + 1]):
            r = rows[k]
            c = cols[k]
            if not _is_border(labels, r, c, v):
                continue
            code = 1
            for dr in range(-1, 2):
                for dc in range(-1, 2):
                    if dr == 0 and dc == 0:
                        continue
                    rr = r + dr
                    cc = c + dc
                    if _same(labels, rr, cc, v) and _is_border(labels, rr, cc, v):
                        code += 10 if (dr != 0 and dc != 0) else 2
            total += weights[code]
        out[i] = total
    return out


@numba.njit(cache=True)
def _monotone_chain(x, y):
    """Convex hull (counter-clockwise, no repeated end point) of points sorted by (x, y)."""
    m = x.size
    hx = np.empty(2 * m + 1, np.float64)
    hy = np.empty(2 * m + 1, np.float64)
    k = 0
    for i in range(m):  # lower hull
        while k >= 2 and ((hx[k - 1] - hx[k - 2]) * (y[i] - hy[k - 2])
                          - (hy[k - 1] - hy[k - 2]) * (x[i] - hx[k - 2])) <= 0:
            k -= 1
        hx[k] = x[i]
        hy[k] = y[i]
        k += 1
    lower = k + 1
    for i in range(m - 2, -1, -1):  # upper hull
        while k >= lower and ((hx[k - 1] - hx[k - 2]) * (y[i] - hy[k - 2])
                              - (hy[k - 1] - hy[k - 2]) * (x[i] - hx[k - 2])) <= 0:
            k -= 1
        hx[k] = x[i]
        hy[k] = y[i]
        k += 1
    return hx[: k - 1], hy[: k - 1]


@numba.njit(cache=True)
def _hull_measures(hx, hy):
    """Area, perimeter, maximum and minimum caliper (Feret) width of a convex polygon."""
    h = hx.size
    area = 0.0
    perim = 0.0
    for i in range(h):
        j = (i + 1) % h
        area += hx[i] * hy[j] - hx[j] * hy[i]
        perim += math.hypot(hx[j] - hx[i], hy[j] - hy[i])
    fmax = 0.0
    for i in range(h):
        for j in range(i + 1, h):
            d = math.hypot(hx[j] - hx[i], hy[j] - hy[i])
            fmax = max(fmax, d)
    fmin = np.inf
    for i in range(h):
        j = (i + 1) % h
        ex = hx[j] - hx[i]
        ey = hy[j] - hy[i]
        le = math.hypot(ex, ey)
        if le == 0.0:
            continue
        width = 0.0
        for k in range(h):
            d = abs(ex * (hy[k] - hy[i]) - ey * (hx[k] - hx[i])) / le
            width = max(width, d)
        fmin = min(fmin, width)
    return 0.5 * abs(area), perim, fmax, fmin


@numba.njit(cache=True)
def _diamond_hull(rr, cmin, cmax, m):
    """Hull of the edge midpoints ("diamonds", scikit-image's offsets) of rows of pixels.

    Row ``rr[t]`` spans columns ``cmin[t]..cmax[t]``; only its extreme pixels matter.
    """
    px = np.empty(6 * m, np.float64)
    py = np.empty(6 * m, np.float64)
    for t in range(m):
        r = rr[t]
        px[6 * t], py[6 * t] = cmin[t] - 0.5, r
        px[6 * t + 1], py[6 * t + 1] = cmax[t] + 0.5, r
        px[6 * t + 2], py[6 * t + 2] = cmin[t], r - 0.5
        px[6 * t + 3], py[6 * t + 3] = cmax[t], r - 0.5
        px[6 * t + 4], py[6 * t + 4] = cmin[t], r + 0.5
        px[6 * t + 5], py[6 * t + 5] = cmax[t], r + 0.5
    order = np.argsort(px * 1e7 + py)
    return _monotone_chain(px[order], py[order])


@numba.njit(cache=True)
def hull_kernel(offsets, rows, cols, bbox):
    """Convex hull measures of each object → (N, 4): convex area px², hull perimeter px, Feret max, Feret min.

    As scikit-image's ``regionprops``: the convex image is every pixel whose centre lies in
    (or on) the convex hull of the object's pixel-edge midpoints (``convex_hull_image``), so
    ``area_convex`` is identical; the Feret diameters and hull perimeter are those of the
    convex image's own edge-midpoint hull, the polygon ``find_contours(convex_image, 0.5)``
    traces, so ``feret_diameter_max`` is identical too.
    """
    n = offsets.size - 1
    out = np.empty((n, 4), np.float64)
    for i in range(n):
        a = offsets[i]
        b = offsets[i + 1]
        r0 = bbox[i, 0]
        nrow = bbox[i, 2] - r0
        rr = np.empty(nrow, np.int64)
        cmin = np.empty(nrow, np.int64)
        cmax = np.empty(nrow, np.int64)
        m = 0
        k = a
        while k < b:  # rows sorted, columns ascending within a row
            r = rows[k]
            lo = cols[k]
            while k + 1 < b and rows[k + 1] == r:
                k += 1
            rr[m] = r
            cmin[m] = lo
            cmax[m] = cols[k]
            m += 1
            k += 1
        hx, hy = _diamond_hull(rr, cmin, cmax, m)
        h = hx.size
        # Convex image: pixel centres inside or on the hull (counter-clockwise edges). Each edge
        # e is a half-plane ex (r - hy) - ey (c - hx) >= 0, i.e. a bound on c for a given row.
        area = 0
        m2 = 0
        for r in range(bbox[i, 0], bbox[i, 2]):
            lo = -np.inf
            hi = np.inf
            for e in range(h):
                f = (e + 1) % h
                ex = hx[f] - hx[e]
                ey = hy[f] - hy[e]
                rhs = ex * (r - hy[e]) + ey * hx[e]  # constraint: ey * c <= rhs
                if ey > 0:
                    hi = min(hi, rhs / ey)
                elif ey < 0:
                    lo = max(lo, rhs / ey)
                elif rhs < -1e-9:
                    lo = np.inf  # row outside a horizontal edge
            first = max(math.ceil(lo - 1e-9), bbox[i, 1])
            last = min(math.floor(hi + 1e-9), bbox[i, 3] - 1)
            if last >= first:
                area += last - first + 1
                rr[m2] = r
                cmin[m2] = first
                cmax[m2] = last
                m2 += 1
        gx, gy = _diamond_hull(rr, cmin, cmax, m2)
        _, perim, fmax, fmin = _hull_measures(gx, gy)
        out[i, 0] = area
        out[i, 1] = perim
        out[i, 2] = fmax
        out[i, 3] = fmin
    return out


@numba.njit(cache=True)
def radial_kernel(labels, ids, offsets, rows, cols, cy, cx, n_angles):
    """Radial profile (N, K): farthest boundary point from the centroid in each of K angular bins.

    Boundary points are the midpoints of the pixel edges between the object and anything
    else (the "crack" boundary). Bin ``k`` covers angles ``[-pi + k d, -pi + (k + 1) d)``,
    ``d = 2 pi / K`` with angle ``atan2(row - cy, col - cx)``; empty bins are filled by
    circular linear interpolation between the nearest filled bins.
    """
    n = ids.size
    out = np.zeros((n, n_angles), np.float64)
    step = 2.0 * math.pi / n_angles
    for i in range(n):
        v = ids[i]
        prof = out[i]
        filled = np.zeros(n_angles, np.bool_)
        for k in range(offsets[i], offsets[i + 1]):
            r = rows[k]
            c = cols[k]
            for e in range(4):
                if e == 0:
                    dr, dc = -1, 0
                elif e == 1:
                    dr, dc = 1, 0
                elif e == 2:
                    dr, dc = 0, -1
                else:
                    dr, dc = 0, 1
                if _same(labels, r + dr, c + dc, v):
                    continue
                y = r + 0.5 * dr - cy[i]
                x = c + 0.5 * dc - cx[i]
                b = int((math.atan2(y, x) + math.pi) / step) % n_angles
                d = math.hypot(x, y)
                if not filled[b] or d > prof[b]:
                    prof[b] = d
                    filled[b] = True
        # Fill empty bins by circular interpolation.
        first = -1
        for b in range(n_angles):
            if filled[b]:
                first = b
                break
        if first < 0:
            continue
        prev = first
        for s in range(1, n_angles + 1):
            b = (first + s) % n_angles
            if filled[b]:
                gap = (b - prev) % n_angles
                if gap == 0:
                    gap = n_angles
                for t in range(1, gap):
                    f = t / gap
                    prof[(prev + t) % n_angles] = (1.0 - f) * prof[prev] + f * prof[b]
                prev = b
    return out


@numba.njit(cache=True)
def concavity_kernel(px, py):
    """Depth of each vertex of each polygon (N, K) inside the polygon's convex hull."""
    n, k = px.shape
    depth = np.zeros((n, k), np.float64)
    for i in range(n):
        order = np.argsort(px[i] * 1e6 + py[i])
        hx, hy = _monotone_chain(px[i][order], py[i][order])
        h = hx.size
        if h < 3:
            continue
        for v in range(k):
            best = np.inf
            for e in range(h):
                f = (e + 1) % h
                ex = hx[f] - hx[e]
                ey = hy[f] - hy[e]
                le = math.hypot(ex, ey)
                if le == 0.0:
                    continue
                d = (ex * (py[i, v] - hy[e]) - ey * (px[i, v] - hx[e])) / le  # >= 0 inside (CCW hull)
                best = min(best, d)
            depth[i, v] = max(best, 0.0)
    return depth


@numba.njit(cache=True)
def moments_kernel(offsets, rows, cols):
    """Per object: centroid (row, col) and central moments mu_pq (row^p col^q), p + q in {2, 3} → (N, 9).

    Columns: cy, cx, mu20, mu11, mu02, mu30, mu21, mu12, mu03 (pixel-centre coordinates).
    """
    n = offsets.size - 1
    out = np.zeros((n, 9), np.float64)
    for i in range(n):
        a = offsets[i]
        b = offsets[i + 1]
        sr = 0.0
        sc = 0.0
        for k in range(a, b):
            sr += rows[k]
            sc += cols[k]
        cy = sr / (b - a)
        cx = sc / (b - a)
        m20 = m11 = m02 = m30 = m21 = m12 = m03 = 0.0
        for k in range(a, b):
            dr = rows[k] - cy
            dc = cols[k] - cx
            m20 += dr * dr
            m11 += dr * dc
            m02 += dc * dc
            m30 += dr * dr * dr
            m21 += dr * dr * dc
            m12 += dr * dc * dc
            m03 += dc * dc * dc
        out[i, 0] = cy
        out[i, 1] = cx
        out[i, 2] = m20
        out[i, 3] = m11
        out[i, 4] = m02
        out[i, 5] = m30
        out[i, 6] = m21
        out[i, 7] = m12
        out[i, 8] = m03
    return out
