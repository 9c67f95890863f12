"""Tissue-level masks as regions: specks removed, small enclosed holes filled.

The model answers a tissue-level prompt ("glands") pixel by pixel, and on glands that answer has two
faults the annotations never have: specks of false positives in the stroma and lamina propria, and
holes where the gland's lumen is pale (GlaS and EBHI annotate a gland with its lumen). So, per
tissue-level mask, at the model's resolution:

1. foreground components smaller than ``min_area_um2`` (default :data:`REGION_MIN_UM2`, about five
   nuclei) are removed;
2. for the objects annotated whole, lumen included (:data:`FILLED_OBJECTS`: glands, as GlaS and EBHI
   draw them; not stroma, whose holes are the glands in it), background components enclosed by the
   mask (not open to the image border) smaller than ``max_hole_um2`` (default :data:`REGION_HOLE_UM2`,
   a disc 80 µm across) are filled.

Both in µm², so the rule means the same at every resolution. The two sizes were chosen on training
images and confirmed on the validation parts (docs/model_card.md, "Tissue-level masks as regions"):
gland Dice on the GlaS validation images 0.816 → 0.841, EBHI 0.901 → 0.907.

Masks larger than a window (slides, memory-mapped) are cleaned window by window in place: windows
overlap by the diameter of the largest hole filled, and a component or hole that touches a window's
inner edge is left to the window that holds it whole. Every component and hole that fits in that
overlap is therefore treated as in one pass over the whole mask; one longer than the overlap and
crossing a window edge is left as it is.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy import ndimage

from ...ontology import load_vocabulary
from .tiling import tile_starts

__all__ = ["FILLED_OBJECTS", "REGION_HOLE_UM2", "REGION_MIN_UM2", "check_region_sizes", "clean_regions",
           "clean_tissue_answers", "fills_holes"]

REGION_MIN_UM2 = 200.0  # µm²: tissue-level components smaller than this are removed
REGION_HOLE_UM2 = 5000.0  # µm²: enclosed holes smaller than this are filled
FILLED_OBJECTS = frozenset({"gland"})  # objects (xpath/vocabulary.json) whose enclosed holes are theirs
_WINDOW = 2048  # px per side of the windows a large mask is cleaned in


def clean_regions(mask: np.ndarray, mpp: float, *, min_area_um2: float = REGION_MIN_UM2,
                  max_hole_um2: float = REGION_HOLE_UM2, window: int = _WINDOW) -> np.ndarray:
    """Remove specks from and fill small holes of a tissue-level mask, in place.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool or uint8 mask (e.g. a memory-mapped slide store); changed in place.
    mpp : float
        µm per pixel of ``mask``.
    min_area_um2 : float
        Components smaller than this (µm²) are removed; 0 removes none.
    max_hole_um2 : float
        Enclosed holes smaller than this (µm²) are filled; 0 fills none.
    window : int
        Side of the windows a larger mask is cleaned in (px).

    Returns
    -------
    numpy.ndarray
        ``mask``.

    Examples
    --------
    A 3 × 3 speck goes, a one-pixel hole is filled (at 5 µm/px: 225 µm² and 25 µm²):

    >>> mask = np.zeros((12, 12), bool); mask[1:4, 1:4] = True; mask[5:11, 5:11] = True; mask[7, 7] = False
    >>> cleaned = clean_regions(mask.copy(), mpp=5.0, min_area_um2=300, max_hole_um2=100)
    >>> int(cleaned[1:4, 1:4].sum()), bool(cleaned[7, 7])
    (0, True)
    """
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) numpy array, got {getattr(mask, 'shape', type(mask).__name__)}")
    if not (math.isfinite(mpp) and mpp > 0):
        raise ValueError(f"mpp must be a positive number of µm per pixel, got {mpp}")
    check_region_sizes(min_area_um2, max_hole_um2)
    if min_area_um2 == 0 and max_hole_um2 == 0:
        return mask
    min_px, hole_px = min_area_um2 / mpp**2, max_hole_um2 / mpp**2
    overlap = math.ceil(2 * math.sqrt(max(min_area_um2, max_hole_um2) / math.pi) / mpp)  # a disc's diameter
    h, w = mask.shape
    window = max(int(window), 2 * overlap + 1)
    for y in tile_starts(h, window, overlap):
        for x in tile_starts(w, window, overlap):
            part = np.asarray(mask[y: y + window, x: x + window], bool)
            if not part.any():
                continue
            cut = (y > 0, x > 0, y + window < h, x + window < w)  # edges inside the mask: top, left, bottom, right
            cleaned = part & ~_small_components(part, min_px, cut)
            cleaned |= _small_components(~cleaned, hole_px, (True,) * 4)  # holes: not open to any edge
            if (cleaned != part).any():
                mask[y: y + window, x: x + window] = cleaned
    return mask


def clean_tissue_answers(plans, masks: dict, instance_maps: dict, mpp: float, min_area_um2: float,
                         max_hole_um2: float) -> None:
    """Clean, in place, the masks of the tissue-level prompts among a predictor's answers.

    ``plans``: the :class:`~xpath.segmentation.support.PromptPlan` of every prompt; ``masks``: the semantic
    masks by prompt; prompts with ``instance_maps`` are left as they are. Holes are filled only for
    :func:`fills_holes` prompts.
    """
    for plan in plans:
        if plan.structure == "tissue" and plan.text is not None and plan.prompt in masks \
                and plan.prompt not in instance_maps:
            clean_regions(masks[plan.prompt], mpp, min_area_um2=min_area_um2,
                          max_hole_um2=max_hole_um2 if fills_holes(plan.text) else 0.0)


def fills_holes(prompt: str) -> bool:
    """Whether the enclosed holes of ``prompt``'s answer are filled: its object (as the vocabulary reads the
    prompt) is one of :data:`FILLED_OBJECTS`.

    >>> fills_holes("glands"), fills_holes("tissue-level gland in colon pathology"), fills_holes("stroma")
    (True, True, False)
    """
    label = load_vocabulary().read(prompt).label
    return label is not None and label.object in FILLED_OBJECTS


def check_region_sizes(min_area_um2: float, max_hole_um2: float,
                       names: tuple[str, str] = ("min_area_um2", "max_hole_um2")) -> None:
    """Raise unless both sizes are finite numbers of µm² >= 0 (``names``: the arguments they came as)."""
    for value, name in zip((min_area_um2, max_hole_um2), names):
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite area in µm² >= 0 (0 turns it off), got {value!r}")


def _small_components(fg: np.ndarray, max_px: float, closed_at: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """The 4-connected components of ``fg`` with fewer than ``max_px`` pixels that touch none of the edges
    flagged in ``closed_at`` (top, left, bottom, right)."""
    if max_px <= 0:
        return np.zeros_like(fg)
    labels, n = ndimage.label(fg)
    if n == 0:
        return np.zeros_like(fg)
    small = np.bincount(labels.ravel(), minlength=n + 1) < max_px
    small[0] = False
    edges = (labels[0], labels[:, 0], labels[-1], labels[:, -1])
    for flagged, edge in zip(closed_at, edges):
        if flagged:
            small[edge] = False
    return small[labels]
