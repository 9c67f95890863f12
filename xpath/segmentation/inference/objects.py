"""Objects prompted by boxes and points: ``TextPromptPredictor.predict_objects``.

One call answers ``N`` spatial prompts: ``N`` boxes, or ``N`` rows of points, or both, with or
without text. Each prompt is decoded as one object by the model (its own token's mask, with the
box's prior: :mod:`~xpath.segmentation.modeling.box_prior`), on a model window that holds it:
the standard tile of the image grid that holds the prompt with the most room, else a window
centred on it. Objects on the same window share one image encoding.

What is kept of the decoded probability map (``> threshold``, default :data:`SPATIAL_THRESHOLD`), per object:

- a **box** without text: the connected component with the most pixels inside the box, cropped to
  the box (the box is the object's extent, as in SAM; the crop cuts the neighbours that touch it);
- a **box with text** ("the glands in this box"): every component whose centre lies in the
  box (else the one with the most pixels inside it), whole;
- **points**: the components that hold a positive point (else the nearest within 8 px of the
  first one); a component holding a negative point is dropped; a nucleus-level object prompted by
  points alone is kept within :data:`NUCLEUS_REACH_UM` of its positive points and, answered from
  the text answer, split from the touching nuclei that the probability map merges with it (the
  component is shared among the model's nuclei in it, its instance map as :meth:`predict` draws it,
  and the click keeps its nucleus's share);

always clipped to the box's neighbourhood (:func:`~xpath.segmentation.modeling.box_prior.box_neighbourhood`); a
gland answered from the text answer has its enclosed holes filled as :meth:`predict` fills them
(:func:`~xpath.segmentation.inference.regions.clean_regions`: a gland with its lumen).
The threshold is lower than the text answer's 0.5 because the box or the point bounds the object:
the rim that 0.5 misses is recovered without the merges it would bring elsewhere.

A model with ``config.spatial_trained`` false (a box/point path never trained, or, in the shipped
file, one that answered worse than the text answer) answers from its text answer instead, and so
does a trained one for an object that needs a window larger than a tile (the decoder learnt
objects inside one tile). The same rules apply: with text, the probability map of that text on
the window; without, the map of each structure the model knows (:func:`structure_prompts`:
"nuclei", "glands", ...), and per object the structure that answers it — for a box, by its size:
nucleus-level structures for a box at most :data:`NUCLEUS_MAX_UM` on its longer side, tissue
structures for a larger one (either, when that one has nothing there); for points, the innermost
structure that holds an object there (a nucleus rather than its gland; the order of
:data:`xpath.ontology.STRUCTURES`). Each text is decoded alone: decoded together, the prompts attend
to each other, and "nuclei" beside "glands" gives a worse nuclei map (box IoU on the MoNuSeg test
images 0.710 against 0.727 alone, docs/model_card.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from ..._types import check_boxes
from ..modeling.box_prior import box_neighbourhood
from ..modeling.segmenter import OBJECT_PROMPT
from .regions import clean_regions, fills_holes
from .tiling import extract_tile, tile_starts

__all__ = ["NUCLEUS_MAX_UM", "NUCLEUS_REACH_UM", "SPATIAL_THRESHOLD", "ObjectPrediction", "check_object_prompts",
           "choose_window", "decode_objects", "inside_box", "nucleus_shares",
           "paste_objects", "select_object", "structure_prompts"]

SPATIAL_THRESHOLD = 0.3  # probability threshold of objects prompted by boxes or points
NUCLEUS_MAX_UM = 30.0  # longer box side (µm) up to which a box without text asks for a nucleus-level object
NUCLEUS_REACH_UM = 6.0  # µm from its positive points within which a nucleus prompted by points alone is kept
_NUCLEUS_LEVEL = ("nuclei", "cell")  # structures (xpath.ontology.STRUCTURES) whose objects are nuclei or cells
_MIN_NUCLEUS_UM2 = 10.0  # min_area_um2 of the instance map whose nuclei share a clicked clump (predict()'s default)
_OBJECT_CHUNK = 32  # objects decoded per call
_POINT_REACH = 8.0  # px: a component this close to a lone positive point still counts as hit
_POINT_CONTEXT = 48  # px of context around points when choosing a window (work pixels)


@dataclass
class ObjectPrediction:
    """The objects of :meth:`TextPromptPredictor.predict_objects`, in input pixels.

    Attributes
    ----------
    masks : numpy.ndarray
        ``(N, H, W)`` bool, one object per prompt (empty where nothing was found).
    scores : numpy.ndarray
        ``(N,)`` mean probability over each object as selected (for a box without text, before its
        crop to the box; 0 for an empty one).
    prompt : str or None
        The text the objects were asked with.
    """

    masks: np.ndarray
    scores: np.ndarray
    prompt: str | None = None

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def boxes(self) -> np.ndarray:
        """``(N, 4)`` xyxy bounding box of each mask (exclusive ends; NaN for an empty mask)."""
        out = np.full((len(self), 4), np.nan)
        for i, m in enumerate(self.masks):
            ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
            if len(ys):
                out[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
        return out

    def to_geojson(self, path, *, classification: str | None = None, **options):
        """Write the objects as QuPath detections (:func:`xpath.io.write_geojson`), classified as
        ``classification`` (default: the prompt, else ``"object"``), with their scores as measurements."""
        from ...io import write_geojson

        name = classification or self.prompt or "object"
        labels = self.to_instances()
        present = np.unique(labels)[1:]
        table = pd.DataFrame({"score": self.scores[present - 1]}, index=present)
        return write_geojson(path, labels, classes=name, measurements=table, **options)

    def to_instances(self) -> np.ndarray:
        """``(H, W)`` int32 label map, object ``i`` labelled ``i + 1``; where objects overlap, the higher score wins."""
        h, w = self.masks.shape[1:]
        out = np.zeros((h, w), np.int32)
        best = np.full((h, w), -np.inf)
        for i in np.argsort(-self.scores, kind="stable"):
            take = self.masks[i] & (best < self.scores[i])
            out[take], best[take] = i + 1, self.scores[i]
        return out


def check_spatial_prompts(boxes: Any, points: Any, n_prompts: int, image_shape: tuple[int, int],
                          work_shape: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """:meth:`~.predictor.TextPromptPredictor.predict`'s per-prompt boxes ``(P, 4)`` / points ``(P, K, 3)``, checked in
    input pixels (``image_shape``) → float arrays in work pixels (``work_shape``); NaN rows mean none."""
    h, w = image_shape
    hw, ww = work_shape
    fx, fy = ww / w, hw / h
    out_boxes = out_points = None
    if boxes is not None:
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim == 1 and n_prompts == 1:
            b = b[None]
        if b.shape != (n_prompts, 4):
            raise ValueError(f"boxes must have shape (P, 4) = ({n_prompts}, 4) (xyxy, NaN rows for none), "
                             f"got {b.shape}")
        given = ~np.isnan(b).all(1)
        if given.any():
            check_boxes(b[given], name="boxes", shape=(h, w))
        out_boxes = b * np.array([fx, fy, fx, fy])
    if points is not None:
        p = np.asarray(points, dtype=np.float64)
        if p.ndim == 2 and n_prompts == 1:
            p = p[None]
        if p.ndim != 3 or p.shape[0] != n_prompts or p.shape[2] != 3:
            raise ValueError(f"points must have shape (P, K, 3) = ({n_prompts}, K, 3) as (x, y, label), "
                             f"NaN where none; got {p.shape}")
        given = ~np.isnan(p).any(2)
        q = p[given]
        if q.size and (~np.isin(q[:, 2], (0.0, 1.0))).any():
            raise ValueError("points labels (third value) must be 1 (positive) or 0 (negative)")
        if q.size and ((q[:, 0] < 0) | (q[:, 0] >= w) | (q[:, 1] < 0) | (q[:, 1] >= h)).any():
            raise ValueError(f"points must lie inside the image (width {w}, height {h})")
        out_points = p * np.array([fx, fy, 1.0])
    return out_boxes, out_points


def check_object_prompts(boxes: Any, points: Any, point_labels: Any,
                         shape: tuple[int, int]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validate spatial prompts for an image of ``shape`` ``(H, W)``.

    Returns ``boxes`` ``(N, 4)`` float64 and ``points`` ``(N, K, 3)`` float64 ``(x, y, label)``
    (either ``None`` when not given). Raises ``ValueError`` naming the argument for: neither
    given, wrong shapes, NaN or infinite values, inverted or zero-area boxes, boxes or points
    outside the image, ``point_labels`` of the wrong shape or not 0/1, a row without a positive
    point, boxes and points of different ``N``.
    """
    h, w = shape
    if point_labels is not None and points is None:
        raise ValueError("point_labels given without points")
    if boxes is None and points is None:
        raise ValueError("predict_objects needs boxes=(N, 4) or points=(N, K, 2), or both")
    out_boxes = out_points = None
    if boxes is not None:
        b = np.asarray(boxes, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
            raise ValueError(f"boxes must have shape (N, 4) as xyxy input pixels with N >= 1, got {b.shape}")
        out_boxes = check_boxes(b, name="boxes", shape=(h, w))
    if points is not None:
        p = np.asarray(points, dtype=np.float64)
        if p.ndim != 3 or p.shape[2] != 2 or 0 in p.shape[:2]:
            raise ValueError(f"points must have shape (N, K, 2) as (x, y) input pixels, got {p.shape}")
        if not np.isfinite(p).all():
            raise ValueError("points contains NaN or infinite values")
        if ((p[..., 0] < 0) | (p[..., 0] >= w) | (p[..., 1] < 0) | (p[..., 1] >= h)).any():
            raise ValueError(f"points must lie inside the image (width {w}, height {h})")
        labels = np.ones(p.shape[:2]) if point_labels is None else np.asarray(point_labels, dtype=np.float64)
        if labels.shape != p.shape[:2]:
            raise ValueError(f"point_labels must have shape (N, K) = {p.shape[:2]}, got {labels.shape}")
        if not np.isin(labels, (0.0, 1.0)).all():
            raise ValueError("point_labels must be 1 (inside the object) or 0 (outside)")
        if not (labels == 1).any(1).all():
            raise ValueError("every row of points needs at least one positive point (point_labels 1)")
        out_points = np.concatenate([p, labels[..., None]], -1)
    if out_boxes is not None and out_points is not None and len(out_boxes) != len(out_points):
        raise ValueError(f"boxes ({len(out_boxes)}) and points ({len(out_points)}) must prompt the same N objects")
    return out_boxes, out_points


def select_object(prob: np.ndarray, *, box: np.ndarray | None = None, points: np.ndarray | None = None,
                  with_text: bool = False, threshold: float = SPATIAL_THRESHOLD,
                  reach: float | None = None, shares: np.ndarray | None = None) -> np.ndarray:
    """The object of one spatial prompt from its probability map (the rules in the module docstring).

    Parameters
    ----------
    prob : numpy.ndarray
        ``(h, w)`` probabilities of the window.
    box : numpy.ndarray, optional
        ``(4,)`` xyxy in window pixels.
    points : numpy.ndarray, optional
        ``(K, 3)`` ``(x, y, label)`` in window pixels.
    with_text : bool
        The prompt had text: a box keeps every component centred in it.
    threshold : float
    reach : float, optional
        Points without a box: keep only the pixels within this many pixels of a positive point.
    shares : numpy.ndarray, optional
        ``(h, w)`` int, the window's :func:`nucleus_shares` at ``threshold`` (points without a box): a kept
        component with a nucleus's share under a positive point keeps only that share.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` bool.
    """
    h, w = prob.shape
    if box is not None:  # nothing beyond the box's neighbourhood is kept: work on that crop alone
        x0, y0, x1, y1 = np.clip(np.asarray(box_neighbourhood(_as_tensor(box))).round().astype(int), 0, [w, h, w, h])
        if (x0, y0, x1, y1) != (0, 0, w, h):
            shift = np.array([x0, y0], np.float64)
            inner = None
            if points is not None:  # a point outside the crop hits no kept object: leave it out
                xy = np.floor(points[:, :2] - shift)
                inner = points[((xy >= 0) & (xy < [x1 - x0, y1 - y0])).all(1)]
                inner = np.concatenate([inner[:, :2] - shift, inner[:, 2:]], 1) if len(inner) else None
            out = np.zeros((h, w), bool)
            out[y0:y1, x0:x1] = select_object(prob[y0:y1, x0:x1], box=np.asarray(box, float) - np.tile(shift, 2),
                                              points=inner, with_text=with_text, threshold=threshold)
            return out
    fg = prob > threshold
    if box is not None:
        x0, y0, x1, y1 = np.asarray(box_neighbourhood(_as_tensor(box))).round().astype(int)
        near = np.zeros_like(fg)
        near[max(y0, 0): max(y1, 0), max(x0, 0): max(x1, 0)] = True
        fg &= near
    labels, n = ndimage.label(fg)
    if n == 0:
        return fg
    ids = np.arange(1, n + 1)
    keep = np.zeros(n + 1, bool)
    if box is not None:
        bx0, by0, bx1, by1 = np.asarray(box, float)
        in_box = np.bincount(labels[inside_box(np.ones_like(fg), box)], minlength=n + 1)
        if with_text:
            centres = np.asarray(ndimage.center_of_mass(fg, labels, ids)).reshape(-1, 2)
            centred = (centres[:, 1] >= bx0) & (centres[:, 1] < bx1) & (centres[:, 0] >= by0) & (centres[:, 0] < by1)
            keep[1:] = centred
        if not keep.any() and in_box[1:].max() > 0:
            keep[1 + int(np.argmax(in_box[1:]))] = True
    if points is not None:
        keep = _point_rule(labels, n, points, keep, with_box=box is not None)
    kept = keep[labels]
    if points is not None and box is None and shares is not None:
        kept = _clicked_shares(kept, labels, shares, points)
    if points is not None and box is None and reach is not None:
        kept &= _near_positive_points(kept.shape, points, reach)
    return kept


def nucleus_shares(prob: np.ndarray, instances: np.ndarray, threshold: float = SPATIAL_THRESHOLD) -> np.ndarray:
    """``(h, w)`` int: the foreground ``prob > threshold`` shared among the nuclei of ``instances``, each pixel
    holding the id of the nucleus whose basin holds it (watershed of ``-prob`` from the nuclei, within each
    connected part); 0 off the foreground and on a part without a nucleus. Computed once per window, for all
    of its clicks."""
    from skimage.segmentation import watershed

    fg = prob > threshold
    return watershed(-prob.astype(np.float32), np.where(fg, instances, 0), mask=fg)


def _clicked_shares(kept: np.ndarray, labels: np.ndarray, shares: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``kept`` with each component that a positive point hits on a nucleus's share cut to that share; a component
    without a share under its point stays whole."""
    h, w = kept.shape
    positive = points[points[:, 2] == 1]
    xy = np.clip(np.floor(positive[:, :2]).astype(int), 0, [w - 1, h - 1])
    chosen = shares[xy[:, 1], xy[:, 0]]
    split = labels[xy[:, 1], xy[:, 0]][chosen > 0]
    return kept & (~np.isin(labels, split) | np.isin(shares, chosen[chosen > 0]))


def _near_positive_points(shape: tuple[int, int], points: np.ndarray, reach: float) -> np.ndarray:
    """``(h, w)`` bool: the pixels whose centres lie within ``reach`` of a positive point."""
    ys, xs = np.arange(shape[0]) + 0.5, np.arange(shape[1]) + 0.5
    near = np.zeros(shape, bool)
    for x, y, _ in points[points[:, 2] == 1]:
        near |= (ys[:, None] - y) ** 2 + (xs[None, :] - x) ** 2 <= reach ** 2
    return near


def _point_rule(labels: np.ndarray, n: int, points: np.ndarray, keep: np.ndarray, *, with_box: bool) -> np.ndarray:
    h, w = labels.shape
    xy = np.clip(np.floor(points[:, :2]).astype(int), 0, [w - 1, h - 1])
    hit = labels[xy[:, 1], xy[:, 0]]
    positive, negative = points[:, 2] == 1, points[:, 2] == 0
    if not with_box:
        keep = np.zeros(n + 1, bool)
        keep[hit[positive & (hit > 0)]] = True
        if not keep.any():  # the first positive point just misses: the nearest component within reach
            dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
            x, y = xy[np.argmax(positive)]
            if dist[y, x] <= _POINT_REACH:
                keep[labels[iy[y, x], ix[y, x]]] = True
    keep[hit[negative & (hit > 0)]] = False
    keep[0] = False
    return keep


def _as_tensor(box: np.ndarray):
    import torch

    return torch.as_tensor(np.asarray(box, np.float64))


# ---------------------------------------------------------------------------- windows
def _extent(box: np.ndarray | None, points: np.ndarray | None) -> np.ndarray:
    """``(4,)`` xyxy region a prompt's object can occupy (work pixels)."""
    parts = []
    if box is not None:
        parts.append(np.asarray(box_neighbourhood(_as_tensor(box))))
    if points is not None:
        xy = points[:, :2]
        parts.append(np.concatenate([xy.min(0) - _POINT_CONTEXT, xy.max(0) + _POINT_CONTEXT]))
    stacked = np.stack(parts)
    return np.concatenate([stacked[:, :2].min(0), stacked[:, 2:].max(0)])


def choose_window(extent: np.ndarray, shape: tuple[int, int], tile: int,
                  origins: np.ndarray) -> tuple[int, int, int]:
    """``(y, x, side)`` of the model window for a prompt's ``extent``: the tile of ``origins`` (``(T, 2)`` ``(y, x)``
    of ``tile``-sided tiles) that holds it with the most room, else a square window centred on it (side a
    multiple of 32, at least ``tile``)."""
    h, w = shape
    x0, y0, x1, y1 = np.clip(extent, 0, [w, h, w, h])
    ys, xs = origins[:, 0], origins[:, 1]
    room = np.minimum.reduce([y0 - ys, ys + tile - y1, x0 - xs, xs + tile - x1])
    if room.max() >= 0:
        y, x = origins[int(np.argmax(room))]
        return int(y), int(x), tile
    side = int(np.ceil(max(tile, y1 - y0, x1 - x0) / 32) * 32)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    y = int(np.clip(round(cy - side / 2), 0, max(h - side, 0)))
    x = int(np.clip(round(cx - side / 2), 0, max(w - side, 0)))
    return y, x, side


def _cached_features(predictor) -> dict[tuple[int, int], tuple]:
    """``(y, x)`` → (cache key, index) of the tiles the predictor encoded in ``set_image``, unmirrored (the
    cache is keyed by ``(origins, view)``, :mod:`~xpath.segmentation.inference.decoding`)."""
    cache = predictor._cache or {}
    return {tuple(o): ((origins, view), j) for origins, view in cache if not any(view)
            for j, o in enumerate(origins)}


def _window_features(predictor, cached: dict, y: int, x: int, side: int):
    """Image features of one window: sliced from the predictor's cache where it encoded that tile, else encoded."""
    if side == predictor.tile and (y, x) in cached:
        key, j = cached[(y, x)]
        return predictor._cache[key].take(j)
    return predictor._encode(extract_tile(predictor._work, y, x, side)[None])


def structure_prompts(model) -> list[tuple[str, str]]:
    """``(prompt, structure)`` per structure ``model`` was trained on, for objects prompted without text: the
    generic nucleus of each structure ("nuclei", "cells") and every tissue label ("glands"), innermost structure
    first; empty without a record."""
    from ...ontology import GENERIC_OBJECT, STRUCTURES
    from ..support import example_prompt, model_vocabulary

    record = model_vocabulary(model)
    if record is None:
        return []
    labels = [t.label for t in record.labels if t.label.object == GENERIC_OBJECT or t.label.structure == "tissue"]
    labels.sort(key=lambda label: -STRUCTURES.index(label.structure))  # innermost first (stable within one)
    return list(dict.fromkeys((example_prompt(label), label.structure) for label in labels))


def _window_groups(predictor, boxes: np.ndarray | None, points: np.ndarray | None) -> tuple[dict, dict]:
    """The predictor's cached tiles, and the objects (indices) grouped by the window ``(y, x, side)`` that holds them."""
    work = predictor._work
    n = len(boxes) if boxes is not None else len(points)
    cached = _cached_features(predictor)
    if cached:
        origins = np.array(sorted(cached), np.int64)
    else:
        ys, xs = tile_starts(work.shape[0], predictor.tile, predictor.overlap), tile_starts(
            work.shape[1], predictor.tile, predictor.overlap)
        origins = np.array([(y, x) for y in ys for x in xs], np.int64)
    groups: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for i in range(n):
        extent = _extent(None if boxes is None else boxes[i], None if points is None else points[i])
        groups[choose_window(extent, work.shape[:2], predictor.tile, origins)].append(i)
    return cached, groups


def decode_objects(predictor, boxes: np.ndarray | None, points: np.ndarray | None, text: str | None, *,
                   structure: str | None = None,
                   threshold: float) -> tuple[list[tuple[int, int, np.ndarray]], np.ndarray]:
    """Decode ``N`` spatial prompts (work pixels) on their windows.

    A window is answered by the object decoder when the model's box/point path was trained and the window
    is one tile (the size it was trained on); otherwise (an untrained path, or an object too large for a
    tile, such as a gland at 0.25 µm/px) from the text answer (:func:`_answer_window`), where there is one.
    ``structure``: that of ``text`` (:data:`xpath.ontology.STRUCTURES`), which sets the rules of points.

    Returns, per object, ``(y, x, mask)`` — the window origin and its ``(side, side)`` bool mask
    in work pixels — and the ``(N,)`` scores.
    """
    model = predictor.model
    trained = getattr(model.config, "spatial_trained", True)
    texts = [(text, structure)] if text is not None else structure_prompts(model)
    mpp = predictor.model_mpp
    n = len(boxes) if boxes is not None else len(points)
    cached, groups = _window_groups(predictor, boxes, points)
    found: list = [None] * n
    scores = np.zeros(n)
    for (y, x, side), members in groups.items():
        feats = _window_features(predictor, cached, y, x, side)
        offset = np.array([x, y], np.float64)
        window_boxes = None if boxes is None else boxes[members] - np.tile(offset, 2)
        window_points = None if points is None else np.concatenate(
            [points[members][..., :2] - offset, points[members][..., 2:]], -1)
        if texts and (not trained or side > predictor.tile):
            masks, window_scores = _answer_window(model, feats, window_boxes, window_points, texts, mpp=mpp,
                                                  with_text=text is not None, threshold=threshold)
        else:
            masks, window_scores = _decode_window(model, feats, window_boxes, window_points, text,
                                                  reach=_reach(structure, mpp), threshold=threshold)
        for j, i in enumerate(members):
            mask = masks[j] if text is not None or boxes is None else inside_box(masks[j], window_boxes[j])
            found[i], scores[i] = (y, x, mask), window_scores[j]
    return found, scores


def _reach(structure: str | None, mpp: float) -> float | None:
    """Pixels from its positive points within which an object of ``structure`` prompted by points is kept."""
    return NUCLEUS_REACH_UM / mpp if structure in _NUCLEUS_LEVEL else None


def inside_box(mask: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``mask`` cropped to the pixels whose centres lie in the xyxy ``box`` (both in the same pixels).

    >>> inside_box(np.ones((4, 4), bool), np.array([0.5, 1.0, 3.2, 2.0])).astype(int).tolist()
    [[0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    """
    h, w = mask.shape
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    rows = (ys >= box[1]) & (ys < box[3])
    cols = (xs >= box[0]) & (xs < box[2])
    return mask & rows[:, None] & cols[None, :]


def _decode_window(model, feats, boxes: np.ndarray | None, points: np.ndarray | None, text: str | None, *,
                   reach: float | None, threshold: float) -> tuple[list[np.ndarray], np.ndarray]:
    """One window's objects (prompts in window pixels) by the object decoder: each prompt's own token's mask."""
    import torch

    n = len(boxes) if boxes is not None else len(points)
    masks, scores = [], np.zeros(n)
    for c0 in range(0, n, _OBJECT_CHUNK):
        chunk = slice(c0, min(c0 + _OBJECT_CHUNK, n))
        tb = None if boxes is None else boxes[chunk]
        tp = None if points is None else points[chunk]
        with torch.inference_mode():
            out = model.decode(feats, [text or OBJECT_PROMPT] * (chunk.stop - chunk.start),
                               boxes=None if tb is None else torch.as_tensor(tb[None], dtype=torch.float32),
                               points=None if tp is None else torch.as_tensor(tp[None], dtype=torch.float32),
                               all_candidates=False)
        prob = torch.sigmoid(out.mask_logits[0].float()).cpu().numpy()
        for j in range(len(prob)):
            mask = select_object(prob[j], box=None if tb is None else tb[j], points=None if tp is None else tp[j],
                                 with_text=text is not None, threshold=threshold, reach=reach)
            scores[c0 + j] = float(prob[j][mask].mean()) if mask.any() else 0.0
            masks.append(mask)
    return masks, scores


def _answer_window(model, feats, boxes: np.ndarray | None, points: np.ndarray | None,
                   texts: list[tuple[str, str]], *, mpp: float, with_text: bool,
                   threshold: float) -> tuple[list[np.ndarray], np.ndarray]:
    """One window's objects from the text answer: the window decodes each of ``texts`` (``(prompt, structure)``)
    alone, and each object is kept from the map of the structure that answers it (the module docstring)."""
    import torch

    from .postprocess import instances_from_maps

    prob, shares = [], []
    with torch.inference_mode():
        for text, structure in texts:  # alone: prompts decoded together attend to each other (the module docstring)
            out = model.decode(feats, [text], all_candidates=False)
            prob.append(torch.sigmoid(out.mask_logits[0, 0].float()).cpu().numpy())  # (side, side)
            share = None
            if points is not None and boxes is None and structure in _NUCLEUS_LEVEL:  # from predict()'s instances
                distance = torch.sigmoid(out.distance_logits[0, 0].float()).cpu().numpy()
                nuclei = instances_from_maps(prob[-1], distance, min_area_um2=_MIN_NUCLEUS_UM2, mpp=mpp)
                share = nucleus_shares(prob[-1], nuclei, threshold)
            shares.append(share)
    n = len(boxes) if boxes is not None else len(points)
    masks, scores = [], np.zeros(n)
    lumens = [fills_holes(text) for text, _ in texts]  # per text: are its enclosed holes its own
    for i in range(n):
        box = None if boxes is None else boxes[i]
        candidates = [select_object(p, box=box, points=None if points is None else points[i], with_text=with_text,
                                    threshold=threshold, reach=_reach(structure, mpp), shares=share)
                      for p, share, (_, structure) in zip(prob, shares, texts)]
        for candidate, filled in zip(candidates, lumens):
            if filled:  # a gland with its lumen, as predict() draws it (.regions)
                clean_regions(candidate, mpp, min_area_um2=0.0)
        k = _answering_structure(candidates, [structure for _, structure in texts], box, mpp)
        scores[i] = float(prob[k][candidates[k]].mean()) if candidates[k].any() else 0.0
        masks.append(candidates[k])
    return masks, scores


def _answering_structure(masks: list[np.ndarray], structures: list[str], box: np.ndarray | None, mpp: float) -> int:
    """Index of the structure whose mask answers a prompt (``masks`` come innermost structure first): the first
    non-empty one, for a box first among the structures of its size (nucleus-level up to :data:`NUCLEUS_MAX_UM`
    on its longer side, tissue above)."""
    order = list(range(len(masks)))
    if box is not None:
        small = max(box[2] - box[0], box[3] - box[1]) * mpp <= NUCLEUS_MAX_UM
        order.sort(key=lambda k: (structures[k] in _NUCLEUS_LEVEL) != small)  # stable: innermost first within each
    return next((k for k in order if masks[k].any()), 0)


def paste_objects(found: list[tuple[int, int, np.ndarray]], work_shape: tuple[int, int],
                  input_shape: tuple[int, int]) -> np.ndarray:
    """``(N, H, W)`` bool masks in input pixels from window masks in work pixels."""
    from PIL import Image as PILImage

    hw, ww = work_shape
    h, w = input_shape
    out = np.zeros((len(found), h, w), bool)
    for i, (y, x, mask) in enumerate(found):
        full = np.zeros((hw, ww), bool)
        crop = mask[: hw - y, : ww - x]
        full[y: y + crop.shape[0], x: x + crop.shape[1]] = crop
        if (hw, ww) != (h, w):
            full = np.asarray(PILImage.fromarray(full).resize((w, h), PILImage.Resampling.NEAREST))
        out[i] = full
    return out
