"""A batch of tiles → the probability and distance maps of the prompts, optionally averaged over mirrored views.

Test-time flips (``TextPromptPredictor(model, test_time_flips=True)``): every tile is decoded as it is, mirrored
left–right, upside down and both (:data:`VIEWS`); each view's maps are mirrored back and the four are averaged, as
are the presence scores. Boxes and points are mirrored with their tile (pixel centres at ``i + 0.5``, so a
coordinate ``x`` of a tile ``t`` pixels wide becomes ``t − x``). It costs four encodings and decodings per tile;
what it buys is measured in docs/model_card.md ("Test-time flips").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# (upside down, left–right): the identity first, so that one view is the plain decode
VIEWS = ((False, False), (False, True), (True, False), (True, True))

_PROMPT_CHUNK = 16  # prompts decoded per call (bounds the (B, P, t, t) output tensors)


def mirror(array: np.ndarray, view: tuple[bool, bool], y_axis: int) -> np.ndarray:
    """``array`` mirrored as ``view`` says, its rows on ``y_axis`` and its columns on the next axis (its own
    inverse)."""
    axes = tuple(axis for axis, flip in zip((y_axis, y_axis + 1), view) if flip)
    return np.flip(array, axis=axes) if axes else array


def mirror_boxes(boxes: np.ndarray, view: tuple[bool, bool], size: int) -> np.ndarray:
    """``(..., 4)`` xyxy boxes in the pixels of a ``size``-pixel tile, mirrored with it (NaN rows stay NaN)."""
    x0, y0, x1, y1 = np.moveaxis(boxes, -1, 0)
    if view[1]:
        x0, x1 = size - x1, size - x0
    if view[0]:
        y0, y1 = size - y1, size - y0
    return np.stack([x0, y0, x1, y1], -1)


def mirror_points(points: np.ndarray, view: tuple[bool, bool], size: int) -> np.ndarray:
    """``(..., 3)`` ``(x, y, label)`` points in the pixels of a ``size``-pixel tile, mirrored with it."""
    out = points.copy()
    for flip, axis in zip(view, (1, 0)):
        if flip:
            out[..., axis] = size - out[..., axis]
    return out


def decode_tiles(predictor, tiles: np.ndarray, origins: Sequence[tuple[int, int]], *, prompts: list[str],
                 inst_idx: list[int], boxes: np.ndarray | None, points: np.ndarray | None,
                 cached: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(B, t, t, 3) tiles → ((B, P + P_inst, t, t) probabilities then distances, (B, P) presence), the mean over
    ``predictor.views``.

    Distances are given for the instance prompts ``inst_idx`` only, in that order. ``boxes`` ``(P, 4)`` and
    ``points`` ``(P, K, 3)`` are in the image's (work) pixels; ``cached``: the tiles are of the image whose
    features ``set_image`` cached, by ``(origins, view)``.
    """
    maps = presence = None
    for view in predictor.views:
        m, p = _decode_view(predictor, tiles, origins, view, prompts=prompts, inst_idx=inst_idx, boxes=boxes,
                            points=points, cached=cached)
        m = mirror(m, view, 2)
        maps, presence = (m, p) if maps is None else (maps + m, presence + p)
    if len(predictor.views) > 1:
        maps /= len(predictor.views)
        presence /= len(predictor.views)
    return maps, presence


def _decode_view(predictor, tiles, origins, view, *, prompts, inst_idx, boxes, points, cached):
    """:func:`decode_tiles` of one view: its maps in the view's (mirrored) pixels."""
    import torch

    key = (tuple(origins), view)
    feats = predictor._cache.get(key) if cached and predictor._cache is not None else None
    if feats is None:
        feats = predictor._encode(np.ascontiguousarray(mirror(tiles, view, 1)))
    b, n_p, size = len(origins), len(prompts), tiles.shape[1]
    offs = np.asarray(origins, np.float64)[:, ::-1]  # (B, 2) as (x, y)
    slot = {i: n_p + j for j, i in enumerate(inst_idx)}  # prompt index -> distance channel
    maps = np.empty((b, n_p + len(inst_idx), tiles.shape[1], tiles.shape[2]), np.float32)
    presence = np.empty((b, n_p), np.float32)
    with predictor._inference():
        for c0 in range(0, n_p, _PROMPT_CHUNK):
            chunk = prompts[c0: c0 + _PROMPT_CHUNK]
            c1 = c0 + len(chunk)
            tb = tp = None
            if boxes is not None:
                bx = boxes[c0:c1][None] - np.tile(offs, 2)[:, None, :]  # (B, P, 4)
                tb = torch.as_tensor(mirror_boxes(bx, view, size), dtype=torch.float32)
            if points is not None:
                pt = points[c0:c1][None].repeat(b, 0)  # (B, P, K, 3)
                pt[..., :2] -= offs[:, None, None, :]
                tp = torch.as_tensor(mirror_points(pt, view, size), dtype=torch.float32)
            out = predictor.model.decode(feats, chunk, boxes=tb, points=tp, **predictor._decode_options)
            maps[:, c0:c1] = torch.sigmoid(out.mask_logits.float()).cpu().numpy()
            presence[:, c0:c1] = torch.sigmoid(out.presence_logits.float()).cpu().numpy()
            local = [i - c0 for i in range(c0, c1) if i in slot]  # instance prompts of this chunk
            if local:
                dist = torch.sigmoid(out.distance_logits[:, local].float()).cpu().numpy()
                maps[:, [slot[c0 + k] for k in local]] = dist
    return maps, presence
