"""Tissue detection at low resolution and a cheap per-image summary (quality control)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from .._types import check_image

__all__ = ["image_summary", "tissue_mask"]


@functools.cache
def _saturation_lut() -> np.ndarray:
    """``(256, 256)`` float32 HSV saturation by (max, min) of a pixel's uint8 channels: the values of
    :func:`skimage.color.rgb2hsv` (same float64 arithmetic), without its hue pass over the image."""
    from skimage.util import img_as_float

    v = img_as_float(np.arange(256, dtype=np.uint8))
    delta = v[:, None] - v[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        sat = delta / v[:, None]
    sat[delta <= 0.0] = 0.0  # max == min (and the unused min > max)
    return sat.astype(np.float32)


def tissue_mask(
    image: np.ndarray,
    *,
    min_fraction: float = 0.001,
    smooth_px: float = 1.0,
    threshold: float | None = None,
) -> np.ndarray:
    """Foreground tissue of a (low-resolution) RGB image: Otsu on the HSV saturation.

    Glass is bright and grey (low saturation); stained tissue is coloured. The saturation
    is smoothed, thresholded by Otsu's method (never below 0.05, so a blank image stays
    blank), closed, hole-filled, and components smaller than ``min_fraction`` of the image
    are dropped.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, 3)`` ``uint8`` RGB, typically a slide thumbnail.
    min_fraction : float
        Smallest kept tissue component, as a fraction of the image area.
    smooth_px : float
        Gaussian smoothing (pixels) of the saturation before thresholding.
    threshold : float, optional
        Fixed saturation threshold in [0, 1] instead of Otsu's.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.

    Examples
    --------
    >>> img = np.full((64, 64, 3), 240, np.uint8); img[16:48, 16:48] = (180, 80, 160)
    >>> mask = tissue_mask(img)
    >>> bool(mask[32, 32]), bool(mask[4, 4]), bool(0.9 < mask.sum() / 32**2 < 1.2)
    (True, False, True)
    """
    from skimage.filters import threshold_otsu

    image = check_image(image)
    if not 0.0 <= min_fraction < 1.0:
        raise ValueError(f"min_fraction must be in [0, 1), got {min_fraction}")
    hi, lo = image.max(axis=2), image.min(axis=2)
    sat = _saturation_lut()[hi, lo]
    # Nearly black pixels (pen marks, slide edges) have unstable saturation: not tissue.
    sat[hi < 30] = 0.0
    if smooth_px > 0:
        sat = ndimage.gaussian_filter(sat, smooth_px)
    if threshold is None:
        threshold = max(0.05, float(threshold_otsu(sat))) if np.ptp(sat) > 0 else 1.0
    elif not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    mask = sat > threshold
    mask = ndimage.binary_closing(mask, iterations=2, border_value=0) | mask
    mask = ndimage.binary_fill_holes(mask)
    comps, n = ndimage.label(mask)
    if n:
        sizes = np.bincount(comps.ravel())
        keep = sizes >= max(1, min_fraction * mask.size)
        keep[0] = False
        mask = keep[comps]
    return mask


def image_summary(path: str | os.PathLike, prompts=None, *, max_size: int = 1024) -> pd.DataFrame:
    """A one-row quality-control summary of an image or slide (cheap: no segmentation).

    Reads the image (a slide's overview at most ``max_size`` pixels wide), detects tissue
    and reports its size, tissue fraction and mean haematoxylin / eosin optical density
    over tissue (Ruifrok–Johnston deconvolution). Usable as ``func=`` of
    :func:`~xpath.pipeline.analyze_cohort` for a fast first pass over a cohort.

    Returns
    -------
    pandas.DataFrame
        One row: ``image.size.width_px``, ``image.size.height_px``, ``image.mpp``,
        ``image.tissue.fraction``, ``image.stain.hematoxylin_od.mean``,
        ``image.stain.eosin_od.mean``.
    """
    from skimage.color import rgb2hed

    from ..io import SLIDE_SUFFIXES, open_slide, read_image

    path = Path(path)
    if path.suffix.lower() in SLIDE_SUFFIXES:
        with open_slide(path) as slide:
            width, height = slide.dimensions
            mpp = slide.mpp
            overview = slide.thumbnail(max_size).array
    else:
        img = read_image(path)
        height, width = img.array.shape[:2]
        mpp = img.mpp
        overview = img.array
    mask = tissue_mask(overview)
    hed = rgb2hed(overview)
    h_mean = float(hed[..., 0][mask].mean()) if mask.any() else float("nan")
    e_mean = float(hed[..., 1][mask].mean()) if mask.any() else float("nan")
    return pd.DataFrame({
        "image.size.width_px": [int(width)],
        "image.size.height_px": [int(height)],
        "image.mpp": [float(mpp) if mpp is not None else float("nan")],
        "image.tissue.fraction": [float(mask.mean())],
        "image.stain.hematoxylin_od.mean": [h_mean],
        "image.stain.eosin_od.mean": [e_mean],
    })
