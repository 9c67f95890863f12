"""Size and shape of every object: moments, perimeter, convex hull, Feret, Hu, Fourier, WDBC.

All values are computed for all objects at once (``bincount`` over the CSR pixel list, or a
numba kernel in :mod:`._kernels`). Lengths are returned in µm and areas in µm² (``mpp`` is
isotropic, so scaling is exact); angles in radians; the rest is dimensionless.
"""

from __future__ import annotations

import math

import numpy as np

from . import _kernels
from ._pixels import ObjectPixels

N_ANGLES = 64  # samples of the radial profile (WDBC, Fourier descriptors)
N_FOURIER = 8
_FRACTAL_STEPS = (1, 2, 4, 8)
SMOOTH_PX = 1.0  # arc length (px) of the Gaussian that smooths the digital boundary's staircase
CONCAVE_DEPTH = 0.05  # a vertex deeper than this fraction of the mean radius is "concave" (concave points)


def central_moments(px: ObjectPixels) -> dict:
    """Area, centroid (centre coordinates, px) and central moments ``mu[p][q]`` (row^p col^q), p+q<=3."""
    area = px.counts.astype(np.float64)
    m = _kernels.moments_kernel(px.offsets, px.rows, px.cols)
    cy, cx = m[:, 0], m[:, 1]
    mu = {pq: m[:, 2 + j] for j, pq in enumerate(((2, 0), (1, 1), (0, 2), (3, 0), (2, 1), (1, 2), (0, 3)))}
    return {"area": area, "cy": cy, "cx": cx, "mu": mu}


def _hu(mu: dict, area: np.ndarray) -> np.ndarray:
    """Hu's seven invariants with scikit-image's index convention; returns (N, 7)."""
    nu = {pq: mu[pq] / area ** ((pq[0] + pq[1]) / 2 + 1) for pq in mu}
    t0 = nu[3, 0] + nu[1, 2]
    t1 = nu[2, 1] + nu[0, 3]
    q0, q1 = t0 * t0, t1 * t1
    n4 = 4 * nu[1, 1]
    s = nu[2, 0] + nu[0, 2]
    d = nu[2, 0] - nu[0, 2]
    hu = np.empty((area.size, 7))
    hu[:, 0] = s
    hu[:, 1] = d * d + n4 * nu[1, 1]
    hu[:, 3] = q0 + q1
    hu[:, 5] = d * (q0 - q1) + n4 * t0 * t1
    t0 = t0 * (q0 - 3 * q1)
    t1 = t1 * (3 * q0 - q1)
    q0 = nu[3, 0] - 3 * nu[1, 2]
    q1 = 3 * nu[2, 1] - nu[0, 3]
    hu[:, 2] = q0 * q0 + q1 * q1
    hu[:, 4] = q0 * t0 + q1 * t1
    hu[:, 6] = q1 * t0 - q0 * t1
    return hu


def shape_features(labels: np.ndarray, px: ObjectPixels, mom: dict, *, mpp: float) -> dict:
    """Columns of the ``shape`` family (names without the ``{compartment}.shape.`` prefix)."""
    area = mom["area"]
    mu = mom["mu"]
    # Inertia tensor as scikit-image: [[mu02, -mu11], [-mu11, mu20]] / mu00 (row = axis 0).
    a = mu[0, 2] / area
    b = -mu[1, 1] / area
    c = mu[2, 0] / area
    half_tr = (a + c) / 2
    rad = np.sqrt(((a - c) / 2) ** 2 + b**2)
    l1 = half_tr + rad
    l2 = np.clip(half_tr - rad, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1 - l2 / l1, 0, 1)), 0.0)
    # scikit-image's definition, including its convention for a == c (the formula's limit for
    # b != 0; -pi/4 for an isotropic object, whose orientation is undefined).
    orient = np.where(a - c == 0, np.where(b < 0, math.pi / 4, -math.pi / 4), 0.5 * np.arctan2(-2 * b, c - a))

    perim = _kernels.perimeter_kernel(labels, px.ids, px.offsets, px.rows, px.cols, _kernels._PERIM_W)
    hull = _kernels.hull_kernel(px.offsets, px.rows, px.cols, px.bbox)
    bbox_area = ((px.bbox[:, 2] - px.bbox[:, 0]) * (px.bbox[:, 3] - px.bbox[:, 1])).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        circ = np.where(perim > 0, 4 * math.pi * area / perim**2, np.nan)
    m2 = mpp * mpp
    return {
        "area_um2": area * m2,
        "area_px": px.counts.astype(np.int64),
        "perimeter_um": perim * mpp,
        "equivalent_diameter_um": np.sqrt(4 * area / math.pi) * mpp,
        "major_axis_um": 4 * np.sqrt(l1) * mpp,
        "minor_axis_um": 4 * np.sqrt(l2) * mpp,
        "eccentricity": ecc,
        "orientation_rad": orient,
        "convex_area_um2": hull[:, 0] * m2,
        "convex_perimeter_um": hull[:, 1] * mpp,
        "solidity": area / hull[:, 0],
        "extent": area / bbox_area,
        "circularity": circ,
        "irregularity": 1 - circ,
        "feret_max_um": hull[:, 2] * mpp,
        "feret_min_um": hull[:, 3] * mpp,
    }


def hu_features(mom: dict) -> dict:
    """Columns ``hu_1`` .. ``hu_7`` (dimensionless, invariant to translation, scale, rotation)."""
    hu = _hu(mom["mu"], mom["area"])
    return {f"hu_{i + 1}": hu[:, i] for i in range(7)}


def radial_profile(labels: np.ndarray, px: ObjectPixels, mom: dict, *, n_angles: int = N_ANGLES):
    """(N, K) distance (px) from the centroid to the boundary at K bin-centre angles, and the angles."""
    prof = _kernels.radial_kernel(labels, px.ids, px.offsets, px.rows, px.cols, mom["cy"], mom["cx"], n_angles)
    theta = -math.pi + (np.arange(n_angles) + 0.5) * 2 * math.pi / n_angles
    return smooth_profile(prof, sigma_px=SMOOTH_PX), theta


def smooth_profile(prof: np.ndarray, *, sigma_px: float) -> np.ndarray:
    """Gaussian smoothing of each radial profile along its boundary with ``sigma_px`` of arc length.

    Removes the half-pixel staircase of digital boundaries (the smooth contour Street et
    al.'s snakes fitted) while keeping shape harmonics: harmonic ``n`` is multiplied by
    ``exp(-(n sigma / r)^2 / 2)``, ``r`` the mean radius in px.
    """
    if prof.size == 0:
        return prof
    k = prof.shape[1]
    spec = np.fft.rfft(prof, axis=1)
    r = np.maximum(prof.mean(1, keepdims=True), 1e-9)
    n = np.arange(spec.shape[1])[None]
    return np.fft.irfft(spec * np.exp(-0.5 * (n * sigma_px / r) ** 2), n=k, axis=1)


def fourier_features(prof: np.ndarray, *, n_harmonics: int = N_FOURIER) -> dict:
    """Magnitudes of harmonics 1..n of the radial profile over the mean radius (scale/rotation invariant)."""
    spec = np.abs(np.fft.rfft(prof, axis=1)) / prof.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = spec[:, 1 : n_harmonics + 1] / spec[:, :1]
    return {f"fourier_{i + 1}": rel[:, i] for i in range(n_harmonics)}


def _interp_periodic(prof: np.ndarray, theta: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``prof`` (samples at equally spaced ``theta``) at ``angles`` (N, M)."""
    k = prof.shape[1]
    pos = ((angles - theta[0]) / (theta[1] - theta[0])) % k
    lo = np.floor(pos).astype(np.int64) % k
    f = pos - np.floor(pos)
    return (1 - f) * np.take_along_axis(prof, lo, 1) + f * np.take_along_axis(prof, (lo + 1) % k, 1)


def wdbc_from_radial(prof: np.ndarray, theta: np.ndarray) -> dict:
    """WDBC nuclear features (Street, Wolberg & Mangasarian 1993) of radial profiles.

    Parameters
    ----------
    prof : numpy.ndarray
        ``(N, K)`` boundary distance from the centroid at the ``K`` equally spaced angles
        ``theta`` (any length unit; K divisible by 16).
    theta : numpy.ndarray
        ``(K,)`` angles in radians, increasing, equally spaced.

    Returns
    -------
    dict
        ``radius``, ``perimeter`` and ``area`` of the polygon in the units of ``prof``;
        ``smoothness``, ``compactness``, ``concavity``, ``concave_points``, ``symmetry``,
        ``fractal_dimension`` dimensionless (definitions in :func:`xpath.biomarkers.feature_catalog`).
    """
    _n, k = prof.shape
    dth = theta[1] - theta[0]
    x = prof * np.cos(theta)
    y = prof * np.sin(theta)
    radius = prof.mean(1)
    seg = np.hypot(np.roll(x, -1, 1) - x, np.roll(y, -1, 1) - y)
    perim = seg.sum(1)
    area = 0.5 * math.sin(dth) * (prof * np.roll(prof, -1, 1)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = np.abs(prof - (np.roll(prof, 1, 1) + np.roll(prof, -1, 1)) / 2).mean(1) / radius
        compact = perim**2 / (4 * math.pi * area) - 1
        depth = _kernels.concavity_kernel(x, y)
        concavity = depth.mean(1) / radius
        deep = depth > CONCAVE_DEPTH * radius[:, None]
        # Concave portions = runs of deep vertices around the closed contour.
        starts = deep & ~np.roll(deep, 1, 1)
        concave_points = np.where(deep.all(1), 1, starts.sum(1)).astype(np.float64)

        # Symmetry about the major axis: the principal axis of the boundary points about the
        # centroid; the profile is interpolated (periodic, linear) at angles mirrored about it.
        cxx, cyy, cxy = (x * x).mean(1), (y * y).mean(1), (x * y).mean(1)
        phi = 0.5 * np.arctan2(2 * cxy, cxx - cyy)
        t = np.arange(1, k // 2) * dth
        w = np.sin(t)
        left = _interp_periodic(prof, theta, phi[:, None] + t)
        right = _interp_periodic(prof, theta, phi[:, None] - t)
        symmetry = (np.abs(left - right) * w).sum(1) / ((left + right) * w).sum(1)

        # Coastline approximation: perimeter measured with coarser rulers (every s-th vertex).
        logs_p, logs_l = [], []
        for s in _FRACTAL_STEPS:
            xs, ys = x[:, ::s], y[:, ::s]
            p = np.hypot(np.roll(xs, -1, 1) - xs, np.roll(ys, -1, 1) - ys).sum(1)
            logs_p.append(np.log(p))
            logs_l.append(np.log(p / xs.shape[1]))
        lp, ll = np.stack(logs_p, 1), np.stack(logs_l, 1)
        llc = ll - ll.mean(1, keepdims=True)
        slope = (llc * (lp - lp.mean(1, keepdims=True))).sum(1) / (llc**2).sum(1)
    return {
        "radius": radius,
        "perimeter": perim,
        "area": area,
        "smoothness": smooth,
        "compactness": compact,
        "concavity": concavity,
        "concave_points": concave_points,
        "symmetry": symmetry,
        "fractal_dimension": -slope,
    }


def wdbc_features(prof: np.ndarray, theta: np.ndarray, *, mpp: float) -> dict:
    """Columns of the ``wdbc`` family with units (``radius_um``, ``perimeter_um``, ``area_um2``, ...)."""
    f = wdbc_from_radial(prof, theta)
    out = {"radius_um": f.pop("radius") * mpp, "perimeter_um": f.pop("perimeter") * mpp,
           "area_um2": f.pop("area") * mpp * mpp}
    out.update(f)
    return out
