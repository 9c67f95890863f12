"""Instance label maps from the model's semantic and distance maps (marker-controlled watershed).

The model's instance head predicts, per prompt, a normalised distance to the object border
(1 at each nucleus centre, 0 at its border and in the background). Touching nuclei form
one connected foreground blob whose distance map still has one peak per nucleus, so:

1. foreground = ``probability > threshold``;
2. markers = connected components of ``distance > marker_threshold`` inside the foreground
   (or the h-maxima of the distance map with ``marker_h``), plus every foreground
   component that received no marker (so that no object is dropped);
3. watershed of ``-distance`` from the markers, restricted to the foreground
   (:func:`skimage.segmentation.watershed`);
4. objects smaller than ``min_area_um2`` (µm², converted with ``mpp``) are removed and
   the ids renumbered ``1..N``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["instances_from_maps", "remove_small_instances"]

_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)


def _check_map(value, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy float array of shape (H, W), got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {value.shape}")
    if shape is not None and value.shape != shape:
        raise ValueError(f"{name} must have shape {shape} like probability, got {value.shape}")
    if not np.issubdtype(value.dtype, np.floating):
        raise TypeError(f"{name} must be a float array with values in [0, 1], got dtype {value.dtype}")
    return value


def remove_small_instances(labels: np.ndarray, min_area_px: float) -> np.ndarray:
    """Remove objects with fewer than ``min_area_px`` pixels and renumber ids ``1..N``.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(H, W)`` integer label image (0 = background).
    min_area_px : float
        Minimum object area in pixels (objects with ``area < min_area_px`` are removed).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` ``int32`` label image with consecutive ids in order of the old ids.

    Examples
    --------
    >>> remove_small_instances(np.array([[1, 1, 0, 7, 4, 4, 4]]), 2).tolist()
    [[1, 1, 0, 0, 2, 2, 2]]
    """
    labels = np.asarray(labels)
    if labels.size == 0 or labels.max() == 0:
        return labels.astype(np.int32)
    area = np.bincount(labels.ravel())
    keep = area >= min_area_px
    keep[0] = False
    lut = np.zeros(area.size, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


def instances_from_maps(
    probability: np.ndarray,
    distance: np.ndarray,
    *,
    threshold: float = 0.5,
    marker_threshold: float = 0.4,
    marker_h: float | None = None,
    min_area_um2: float = 0.0,
    mpp: float | None = None,
    foreground: np.ndarray | None = None,
) -> np.ndarray:
    """Instance label map by marker-controlled watershed of the distance map.

    Parameters
    ----------
    probability : numpy.ndarray
        ``(H, W)`` float semantic probability in ``[0, 1]``.
    distance : numpy.ndarray
        ``(H, W)`` float normalised distance to the object border in ``[0, 1]`` (1 at
        object centres), the sigmoid of the model's ``distance_logits``.
    threshold : float
        Foreground is ``probability > threshold``.
    marker_threshold : float
        Markers are the connected components of ``distance > marker_threshold``. Two
        touching objects separate when the distance between them dips below it.
    marker_h : float, optional
        Use the h-maxima (of height ``marker_h``, in distance units) of the distance map
        smoothed with a 1-pixel Gaussian instead of ``marker_threshold`` (robust to uneven
        peak heights, slower).
    min_area_um2 : float
        Objects smaller than this (µm²) are removed; needs ``mpp`` when > 0.
    mpp : float, optional
        µm per pixel of the maps.
    foreground : numpy.ndarray, optional
        ``(H, W)`` bool foreground to use instead of ``probability > threshold``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` ``int32`` label image, ids ``1..N`` (0 = background).

    Examples
    --------
    Two touching squares whose distance maps peak at their centres split into two:

    >>> prob = np.zeros((5, 9)); prob[1:4, 1:8] = 1
    >>> dist = np.zeros((5, 9)); dist[2, 2:4] = 1; dist[2, 5:7] = 1
    >>> instances_from_maps(prob, dist)[2].tolist()
    [0, 1, 1, 1, 1, 2, 2, 2, 0]
    """
    from skimage.segmentation import watershed

    probability = _check_map(probability, "probability")
    distance = _check_map(distance, "distance", probability.shape)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    if not 0.0 <= marker_threshold < 1.0:
        raise ValueError(f"marker_threshold must be in [0, 1), got {marker_threshold}")
    if min_area_um2 < 0:
        raise ValueError(f"min_area_um2 must be >= 0, got {min_area_um2}")
    if min_area_um2 > 0 and mpp is None:
        raise ValueError("mpp (µm per pixel of the maps) is required when min_area_um2 > 0")
    if mpp is not None and not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp}")

    fg = probability > threshold if foreground is None else np.asarray(foreground, bool)
    if not fg.any():
        return np.zeros(probability.shape, np.int32)
    dist = np.where(fg, distance.astype(np.float32, copy=False), 0.0)
    if marker_h is None:
        seeds = (dist > marker_threshold) & fg
    else:
        from skimage.morphology import h_maxima

        if not 0.0 < marker_h < 1.0:
            raise ValueError(f"marker_h must be in (0, 1), got {marker_h}")
        # h-maxima on a float ridge gives one marker per plateau pixel: smooth, quantise to 8 bits.
        dist = ndimage.gaussian_filter(dist, 1.0)
        quant = np.rint(np.clip(dist, 0.0, 1.0) * 255).astype(np.uint8)
        seeds = h_maxima(quant, max(1, round(marker_h * 255))).astype(bool) & fg
    markers, n_markers = ndimage.label(seeds, structure=_FOUR)
    comps, n_comps = ndimage.label(fg, structure=_FOUR)
    # Markers per foreground component: most nuclei are alone in theirs and need no flooding.
    comp_of = np.zeros(n_markers + 1, np.int64)  # marker id -> its component (a marker lies in one)
    comp_of[markers[seeds]] = comps[seeds]
    comp_of = comp_of[1:]
    per_comp = np.bincount(comp_of, minlength=n_comps + 1)
    # A component with one marker is that object (the 4-connected watershed would flood all of it);
    # one with none becomes its own object (nothing is dropped); only clumps with several go to the watershed.
    lut = np.zeros(n_comps + 1, np.int32)
    single = per_comp[comp_of] == 1
    lut[comp_of[single]] = np.arange(1, n_markers + 1, dtype=np.int32)[single]
    orphan = per_comp == 0
    orphan[0] = False
    lut[orphan] = np.arange(n_markers + 1, n_markers + 1 + int(orphan.sum()), dtype=np.int32)
    labels = lut[comps]
    clump = per_comp >= 2
    if clump.any():
        in_clump = clump[comps]
        rows, cols = np.nonzero(in_clump.any(1))[0], np.nonzero(in_clump.any(0))[0]
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        flooded = watershed(-dist[box], markers=np.where(in_clump[box], markers[box], 0), mask=in_clump[box],
                            connectivity=1)
        labels[box] = np.where(in_clump[box], flooded, labels[box])
    min_px = min_area_um2 / (mpp * mpp) if min_area_um2 > 0 else 0.0
    return remove_small_instances(labels, min_px)
