"""Single-pass numba kernels over label maps, for the merge and the type split of large maps.

Each numpy version of these took a handful of full-size passes (a gather, a comparison, two
``bincount``, a ``where``, a masked write) over every window a slide's stitcher labels; these walk
the pixels once or twice. Imported lazily by :func:`~xpath.segmentation.inference.stitching.merge_objects`
and :func:`~xpath.segmentation.inference.nucleus_types.split_into`, so that importing the
segmentation package does not import numba.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["count_free", "paste_free", "split_band"]


@numba.njit(cache=True)
def count_free(target, labels, chosen, n):
    """``(total, free)``: per id of ``labels`` among ``chosen``, its pixels and those where ``target`` is 0."""
    total = np.zeros(n, np.int64)
    free = np.zeros(n, np.int64)
    h, w = labels.shape
    for r in range(h):
        for c in range(w):
            v = labels[r, c]
            if v > 0 and chosen[v]:
                total[v] += 1
                if target[r, c] == 0:
                    free[v] += 1
    return total, free


@numba.njit(cache=True)
def paste_free(target, labels, lut):
    """Write ``lut[labels]`` into ``target`` where ``lut`` is non-zero and ``target`` is 0; returns the
    ``(h, w)`` int32 map of what was written (0 elsewhere)."""
    h, w = labels.shape
    pasted = np.zeros((h, w), np.int32)
    for r in range(h):
        for c in range(w):
            new = lut[labels[r, c]]
            if new != 0 and target[r, c] == 0:
                target[r, c] = new
                pasted[r, c] = new
    return pasted


@numba.njit(cache=True)
def split_band(band, types, group, out, mask, with_mask):
    """On the instance pixels of ``band``: ``out`` gets the id where the instance's type is ``group``, else 0;
    ``mask`` (when ``with_mask``) whether it is. Pixels of the background are left as they are."""
    h, w = band.shape
    for r in range(h):
        for c in range(w):
            v = band[r, c]
            if v == 0:
                continue
            mine = types[v] == group
            out[r, c] = v if mine else 0
            if with_mask:
                mask[r, c] = mine
