"""Stain intensity and texture of every object: H&E colour deconvolution statistics and GLCM/Haralick.

Colour deconvolution is Ruifrok & Johnston's (2001) with scikit-image's ``hed_from_rgb``
matrix, applied only to object pixels, so it equals ``skimage.color.rgb2hed`` there. The
third channel (DAB in ``rgb2hed``) is reported as ``residual``: on H&E it holds what the two
stains do not explain. Texture uses one grey-level co-occurrence matrix per object, offset and
angle (numba kernel over objects), restricted to pairs of pixels that both lie in the object.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from skimage.color import hed_from_rgb

from ._pixels import ObjectPixels

STAIN_CHANNELS = ("hematoxylin", "eosin", "residual")
INTENSITY_STATS = ("mean", "std", "min", "max", "median", "iqr", "skew", "kurtosis")
GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2)
GLCM_ANGLES = (0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4)
GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "asm", "energy", "correlation", "entropy")
_GREY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # skimage.color.rgb2gray
# skimage.color.rgb2hed's optical density of each uint8 value: log(max(v / 255, 1e-6)) / log(1e-6).
_OD_LUT = np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / math.log(1e-6)


def deconvolve(rgb: np.ndarray) -> np.ndarray:
    """Stain amounts ``(..., 3)`` (hematoxylin, eosin, residual) of ``uint8`` RGB pixels ``(..., 3)``.

    Identical to ``skimage.color.rgb2hed(rgb)`` (optical density in ``log(1e-6)`` units, clipped at 0).
    """
    if rgb.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8, got dtype {rgb.dtype}")
    od = _OD_LUT[rgb]  # (..., 3): a 256-entry look-up instead of a logarithm per pixel
    stains = od[..., 0:1] * hed_from_rgb[0] + od[..., 1:2] * hed_from_rgb[1] + od[..., 2:3] * hed_from_rgb[2]
    return np.maximum(stains, 0.0)


def grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance in ``[0, 255]`` (``skimage.color.rgb2gray`` weights) of ``(..., 3)`` RGB."""
    return rgb.astype(np.float64) @ _GREY_WEIGHTS


@numba.njit(cache=True)
def _quantile_sorted(s, p):
    pos = (s.size - 1) * p
    lo = math.floor(pos)
    hi = min(lo + 1, s.size - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@numba.njit(cache=True)
def group_stats(values, offsets):
    """Per segment: mean, std, min, max, median, IQR, skewness, excess kurtosis → (N, 8).

    std is the population one (``ddof=0``); skewness and kurtosis are the biased moment
    estimators of ``scipy.stats.skew``/``kurtosis`` (Fisher); quantiles interpolate linearly
    (``numpy.percentile``'s default).
    """
    n = offsets.size - 1
    out = np.full((n, 8), np.nan)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        if b <= a:
            continue
        s = np.sort(values[a:b])
        m = s.mean()
        d = s - m
        m2 = (d * d).mean()
        out[i, 0] = m
        out[i, 1] = math.sqrt(m2)
        out[i, 2] = s[0]
        out[i, 3] = s[-1]
        out[i, 4] = _quantile_sorted(s, 0.5)
        out[i, 5] = _quantile_sorted(s, 0.75) - _quantile_sorted(s, 0.25)
        if m2 > 0:
            out[i, 6] = (d**3).mean() / m2**1.5
            out[i, 7] = (d**4).mean() / m2**2 - 3.0
    return out


def intensity_features(image: np.ndarray, px: ObjectPixels) -> dict:
    """Columns ``stain.{channel}.{stat}`` of each object (names without the compartment prefix)."""
    rgb = image[px.rows, px.cols]  # (P, 3)
    hed = deconvolve(rgb)
    out = {}
    for ci, ch in enumerate(STAIN_CHANNELS):
        st = group_stats(np.ascontiguousarray(hed[:, ci]), px.offsets)
        for si, stat in enumerate(INTENSITY_STATS):
            out[f"stain.{ch}.{stat}"] = st[:, si]
    return out


def grey_std(image: np.ndarray, px: ObjectPixels) -> np.ndarray:
    """(N,) standard deviation of the grey level (0-255) inside each object (WDBC "texture")."""
    g = grey(image[px.rows, px.cols])
    return group_stats(g, px.offsets)[:, 1]


def glcm_offsets(distances=GLCM_DISTANCES, angles=GLCM_ANGLES) -> np.ndarray:
    """(D*A, 2) ``(d_row, d_col)`` offsets, scikit-image's convention ``(round(sin a * d), round(cos a * d))``."""
    return np.array([(round(math.sin(a) * d), round(math.cos(a) * d)) for d in distances for a in angles],
                    np.int64)


@numba.njit(cache=True)
def glcm_kernel(levels, labels, ids, offsets, rows, cols, deltas, n_levels):
    """Haralick features (N, n_offsets, 7) of symmetric, normalised per-object GLCMs.

    Only pixel pairs with both pixels in the object count. Features follow
    ``skimage.feature.graycoprops``: contrast, dissimilarity, homogeneity, ASM, energy,
    correlation (1 when a marginal has zero variance), entropy (natural log). NaN for objects
    without any pair at an offset.
    """
    n = ids.size
    n_off = deltas.shape[0]
    h, w = labels.shape
    out = np.full((n, n_off, 7), np.nan)
    P = np.zeros((n_levels, n_levels), np.float64)
    for i in range(n):
        v = ids[i]
        a, b = offsets[i], offsets[i + 1]
        lo = n_levels
        hi = 0
        for k in range(a, b):
            q = np.int64(levels[rows[k], cols[k]])
            lo = min(lo, q)
            hi = max(hi, q)
        for o in range(n_off):
            dr, dc = deltas[o, 0], deltas[o, 1]
            for x in range(lo, hi + 1):
                for y in range(lo, hi + 1):
                    P[x, y] = 0.0
            total = 0.0
            for k in range(a, b):
                r, c = rows[k], cols[k]
                rr, cc = r + dr, c + dc
                if rr < 0 or rr >= h or cc < 0 or cc >= w or labels[rr, cc] != v:
                    continue
                x = np.int64(levels[r, c])
                y = np.int64(levels[rr, cc])
                P[x, y] += 1.0
                P[y, x] += 1.0
                total += 2.0
            if total == 0.0:
                continue
            con = dis = hom = asm = ent = 0.0
            mi = 0.0
            for x in range(lo, hi + 1):
                for y in range(lo, hi + 1):
                    p = P[x, y] / total
                    if p == 0.0:
                        continue
                    d = x - y
                    con += p * d * d
                    dis += p * abs(d)
                    hom += p / (1.0 + d * d)
                    asm += p * p
                    ent -= p * math.log(p)
                    mi += p * x
            var = 0.0
            cov = 0.0
            for x in range(lo, hi + 1):
                for y in range(lo, hi + 1):
                    p = P[x, y] / total
                    if p == 0.0:
                        continue
                    var += p * (x - mi) ** 2
                    cov += p * (x - mi) * (y - mi)
            out[i, o, 0] = con
            out[i, o, 1] = dis
            out[i, o, 2] = hom
            out[i, o, 3] = asm
            out[i, o, 4] = math.sqrt(asm)
            out[i, o, 5] = 1.0 if math.sqrt(var) < 1e-15 else cov / var  # symmetric: sigma_i = sigma_j
            out[i, o, 6] = ent
    return out


def quantise(rgb: np.ndarray, n_levels: int = GLCM_LEVELS) -> np.ndarray:
    """``uint8`` grey level ``floor(grey * n_levels / 256)`` of RGB pixels ``(..., 3)``."""
    return np.minimum(grey(rgb) * (n_levels / 256.0), n_levels - 1).astype(np.uint8)


def texture_features(image: np.ndarray, labels: np.ndarray, px: ObjectPixels) -> dict:
    """Columns ``texture.glcm_{prop}.mean`` / ``.range`` (over 2 distances x 4 angles)."""
    levels = np.zeros(labels.shape, np.uint8)  # only object pixels are read by the kernel
    levels[px.rows, px.cols] = quantise(image[px.rows, px.cols])
    feats = glcm_kernel(levels, labels, px.ids, px.offsets, px.rows, px.cols, glcm_offsets(), GLCM_LEVELS)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows of objects without pixel pairs
        mean = np.nanmean(feats, 1)
        rng = np.nanmax(feats, 1) - np.nanmin(feats, 1)
    for pi, prop in enumerate(GLCM_PROPS):
        out[f"texture.glcm_{prop}.mean"] = mean[:, pi]
        out[f"texture.glcm_{prop}.range"] = rng[:, pi]
    return out
