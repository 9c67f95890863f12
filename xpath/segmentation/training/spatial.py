"""Box and point prompts drawn from a tile's ground truth (SAM-style), for training spatial prompts.

For a present label, one *object* is drawn: an instance of the label (the tile's instance map
restricted to the label's mask; connected components where the label has no instances, e.g.
glands). Its prompt is, at random:

- a **box**: the object's bounding box, each side jittered by up to ±10 % of its length;
- **points**: 1–3 positive points inside the object (the first at its deepest pixel half of
  the time, so that "one click in the middle" is common), and half the time one negative
  point outside it, near it.

With the label's text kept, a prompt can instead be a **region box** (a random box over a part of
the tile) whose target is every object of the label with its centre inside the box: "the glands in
this box". Coordinates are ``(x, y)`` in tile pixels; boxes are xyxy with exclusive ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MAX_POINTS", "SpatialPrompt", "label_objects", "sample_spatial_prompt"]

#: Point slots per prompt (up to 3 positive + 1 negative).
MAX_POINTS = 4


@dataclass(frozen=True)
class SpatialPrompt:
    """One drawn spatial prompt: ``box`` ``(4,)`` and ``points`` ``(MAX_POINTS, 3)`` (x, y, label),
    NaN where unused; ``target`` ``(H, W)`` bool; ``instance`` whether the target is one object
    of an instance map (so it has a distance target)."""

    box: np.ndarray
    points: np.ndarray
    target: np.ndarray
    instance: bool


def label_objects(mask: np.ndarray, instances: np.ndarray | None, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """The objects of one label in a tile: an ``(H, W)`` int map (0 = none) and the ids with at least
    ``min_area`` pixels. Instances of ``instances`` inside ``mask``, else connected components of ``mask``."""
    if instances is not None:
        objects = np.where(mask, instances, 0)
    else:
        objects, _ = ndimage.label(mask)
    ids, counts = np.unique(objects[objects > 0], return_counts=True)
    return objects, ids[counts >= min_area]


def _jittered_box(ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    y0, y1, x0, x1 = ys.min(), ys.max() + 1.0, xs.min(), xs.max() + 1.0
    h, w = y1 - y0, x1 - x0
    d = rng.uniform(-jitter, jitter, 4) * np.array([w, h, w, h])
    box = np.array([x0, y0, x1, y1], np.float32) + d
    return np.array([min(box[0], box[2] - 1), min(box[1], box[3] - 1), max(box[2], box[0] + 1),
                     max(box[3], box[1] + 1)], np.float32)


def _points(obj: np.ndarray, ys: np.ndarray, xs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.full((MAX_POINTS, 3), np.nan, np.float32)
    n_pos = int(rng.integers(1, 4))
    pick = rng.choice(len(ys), n_pos, replace=len(ys) < n_pos)
    pos = np.stack([xs[pick] + 0.5, ys[pick] + 0.5], 1)
    if rng.random() < 0.5:  # one click in the middle
        depth = ndimage.distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        cy, cx = np.unravel_index(int(np.argmax(depth)), obj.shape)
        pos[0] = (cx + 0.5, cy + 0.5)
    out[:n_pos, :2], out[:n_pos, 2] = pos, 1.0
    if rng.random() < 0.5:  # a negative click near the object, outside it
        ring = ndimage.binary_dilation(obj, iterations=max(2, int(np.sqrt(len(ys)) // 2))) & ~obj
        ry, rx = np.nonzero(ring)
        if len(ry):
            j = int(rng.integers(len(ry)))
            out[n_pos] = (rx[j] + 0.5, ry[j] + 0.5, 0.0)
    return out


def _region_box(objects: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> SpatialPrompt | None:
    h, w = objects.shape
    side = rng.uniform(0.25, 0.75, 2) * np.array([w, h])
    x0, y0 = rng.uniform(0, w - side[0]), rng.uniform(0, h - side[1])
    box = np.array([x0, y0, x0 + side[0], y0 + side[1]], np.float32)
    centres = np.asarray(ndimage.center_of_mass(objects > 0, objects, ids)).reshape(-1, 2)  # (y, x)
    inside = ((centres[:, 1] >= box[0]) & (centres[:, 1] < box[2]) & (centres[:, 0] >= box[1])
              & (centres[:, 0] < box[3]))
    if not inside.any():
        return None
    target = np.isin(objects, ids[inside])
    return SpatialPrompt(box, np.full((MAX_POINTS, 3), np.nan, np.float32), target, False)


def sample_spatial_prompt(mask: np.ndarray, instances: np.ndarray | None, rng: np.random.Generator, *,
                          min_area: int = 10, points_prob: float = 0.4, region_prob: float = 0.0,
                          jitter: float = 0.1) -> SpatialPrompt | None:
    """Draw one spatial prompt for a label's ``mask`` (``None`` when it has no object of ``min_area``).

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool, the label in the tile.
    instances : numpy.ndarray or None
        ``(H, W)`` instance map of the tile, or ``None`` (objects = connected components).
    rng : numpy.random.Generator
    min_area : int
        Smallest object drawn, in pixels.
    points_prob : float
        Probability of points rather than a box.
    region_prob : float
        Probability of a region box over several objects (the caller keeps the label's text).
    jitter : float
        Box jitter as a fraction of the box's side.
    """
    objects, ids = label_objects(mask, instances, min_area)
    if len(ids) == 0:
        return None
    if region_prob > 0 and rng.random() < region_prob:
        found = _region_box(objects, ids, rng)
        if found is not None:
            return found
    obj = objects == ids[int(rng.integers(len(ids)))]
    ys, xs = np.nonzero(obj)
    if rng.random() < points_prob:
        box, points = np.full(4, np.nan, np.float32), _points(obj, ys, xs, rng)
    else:
        box, points = _jittered_box(ys, xs, rng, jitter), np.full((MAX_POINTS, 3), np.nan, np.float32)
    return SpatialPrompt(box, points, obj, instances is not None)
