"""The geometric prior of a box prompt: an object prompted by a box lies in the box's neighbourhood.

A box prompt's object mask gets ``box_prior_logits`` added: 0 inside the box, falling linearly
to ``-BOX_PRIOR_DEPTH`` at ``box_margin`` outside it. The content of the mask is learned (the
prompt token through the mask head); the prior only says where it may be, so that a dot product
of content features, which cannot tell one nucleus from its identical neighbour, need not
localise the object alone. The predictor keeps nothing beyond the same margin
(:func:`box_neighbourhood`): one definition of "the box's neighbourhood" for training and
inference.
"""

from __future__ import annotations

import torch

__all__ = ["BOX_PRIOR_DEPTH", "box_margin", "box_neighbourhood", "box_prior_logits"]

#: Logit added at (and beyond) the margin outside a box.
BOX_PRIOR_DEPTH = 12.0
#: Margin as a fraction of the box's longer side, and its floor in input pixels.
MARGIN_FRACTION, MIN_MARGIN = 0.25, 8.0


def box_margin(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy boxes → ``(...)`` margin in pixels: a quarter of the longer side, at least 8 px."""
    side = torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
    return torch.clamp(side * MARGIN_FRACTION, min=MIN_MARGIN)


def box_neighbourhood(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` xyxy boxes grown by :func:`box_margin` on every side."""
    m = box_margin(boxes)[..., None]
    return boxes + torch.cat([-m, -m, m, m], -1)


def box_prior_logits(boxes: torch.Tensor, grid: tuple[int, int], stride: int) -> torch.Tensor:
    """Prior logits of ``(B, P, 4)`` xyxy boxes (input pixels; NaN rows = no box → 0) on a
    ``grid`` ``(h, w)`` of cells of ``stride`` pixels: ``(B, P, h, w)``.

    Examples
    --------
    >>> b = torch.tensor([[[8.0, 8.0, 24.0, 24.0]]])
    >>> prior = box_prior_logits(b, (12, 12), 4)
    >>> float(prior[0, 0, 4, 4]) == 0.0, float(prior[0, 0, 0, 0]) < -5  # inside the box: 0 (torch gives -0.0)
    (True, True)
    """
    h, w = grid
    ys = (torch.arange(h, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride  # cell centres
    xs = (torch.arange(w, device=boxes.device, dtype=boxes.dtype) + 0.5) * stride
    x0, y0, x1, y1 = (boxes[..., i, None] for i in range(4))  # (B, P, 1)
    dx = torch.clamp(torch.maximum(x0 - xs, xs - x1), min=0)  # (B, P, w)
    dy = torch.clamp(torch.maximum(y0 - ys, ys - y1), min=0)  # (B, P, h)
    outside = torch.sqrt(dy[..., :, None] ** 2 + dx[..., None, :] ** 2)  # (B, P, h, w)
    prior = -BOX_PRIOR_DEPTH * torch.clamp(outside / box_margin(boxes)[..., None, None], max=1.0)
    return torch.nan_to_num(prior, nan=0.0)
