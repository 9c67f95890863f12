"""Macenko stain normalisation of H&E images to a reference (optional, at inference).

Macenko et al., "A method for normalizing histology slides for quantitative analysis", ISBI
2009: optical densities ``OD = -log((I + 1) / 256)`` of the stained pixels are projected on the
plane of their two main directions; the extreme angles there (robust percentiles) are the
haematoxylin and eosin vectors; each pixel's stain concentrations, rescaled so that their 99th
percentiles match the reference's, are remixed with the reference's stain vectors. The
reference is the one of Macenko's paper (as in most implementations).

Whether it helps the shipped model is measured, not assumed: ``python
benchmarks/segmentation_accuracy.py --stain-shift --stain-normalization`` (see the model card).
"""

from __future__ import annotations

import numpy as np

__all__ = ["REFERENCE_MAX_CONCENTRATION", "REFERENCE_STAINS", "macenko_normalize", "macenko_stains"]

#: Reference H and E optical-density vectors (columns) and 99th-percentile concentrations.
REFERENCE_STAINS = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_CONCENTRATION = np.array([1.9705, 1.0308])

_BACKGROUND_OD = 0.15  # pixels with an OD below this in any channel are background
_ANGLE_PERCENTILE = 1.0
_MIN_STAINED_PIXELS = 100


def _optical_density(image: np.ndarray) -> np.ndarray:
    return -np.log((image.reshape(-1, 3).astype(np.float64) + 1.0) / 256.0)


def macenko_stains(image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``(3, 2)`` H and E optical-density vectors of an ``(H, W, 3)`` uint8 image and its
    ``(2,)`` 99th-percentile concentrations; ``None`` when it has too few stained pixels."""
    od = _optical_density(image)
    stained = od[(od > _BACKGROUND_OD).all(1)]
    if len(stained) < _MIN_STAINED_PIXELS:
        return None
    _, vectors = np.linalg.eigh(np.cov(stained.T))
    plane = vectors[:, 1:3]  # the two largest eigenvalues' directions
    projected = stained @ plane
    angle = np.arctan2(projected[:, 1], projected[:, 0])
    lo, hi = np.percentile(angle, [_ANGLE_PERCENTILE, 100 - _ANGLE_PERCENTILE])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    stains = np.stack([v1, v2], 1) if v1[0] > v2[0] else np.stack([v2, v1], 1)  # haematoxylin: more red OD
    stains *= np.sign(stains.sum(0, keepdims=True))  # point into positive OD
    concentrations = np.linalg.lstsq(stains, stained.T, rcond=None)[0]
    return stains, np.percentile(concentrations, 99, axis=1)


def macenko_normalize(image: np.ndarray) -> np.ndarray:
    """``image`` (``(H, W, 3)`` uint8) with its H&E remixed to the reference; returned unchanged when it has
    too few stained pixels to estimate its stains (a blank tile).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> tile = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
    >>> macenko_normalize(tile).shape
    (64, 64, 3)
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be an (H, W, 3) uint8 array, got {image.dtype} {image.shape}")
    found = macenko_stains(image)
    if found is None:
        return image
    stains, max_c = found
    od = _optical_density(image)
    concentrations = np.linalg.lstsq(stains, od.T, rcond=None)[0]  # (2, N)
    concentrations *= (REFERENCE_MAX_CONCENTRATION / np.maximum(max_c, 1e-6))[:, None]
    out = 256.0 * np.exp(-(REFERENCE_STAINS @ concentrations)) - 1.0
    return np.clip(np.rint(out.T), 0, 255).astype(np.uint8).reshape(image.shape)
