"""Spatial prompts (boxes, points) as tokens for the joint module.

:class:`SpatialPromptEncoder` turns each box corner and point into a token (random Fourier
features of its normalised position, a type embedding and its prompt's token), which the
joint module (:mod:`~xpath.segmentation.modeling.joint`) attends to beside the text tokens.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["SpatialPromptEncoder"]


class SpatialPromptEncoder(nn.Module):
    """Boxes and points → tokens (random Fourier features of the normalised position).

    A box gives two tokens (its corners), a point one; each adds a learned type embedding
    (box corner 1/2, positive point, negative point) and its prompt's token, so the joint
    module knows which prompt a location belongs to. NaN entries give no token.
    """

    def __init__(self, dim: int, *, num_frequencies: int | None = None, seed: int = 0) -> None:
        super().__init__()
        n = num_frequencies or dim // 2
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(2, n, generator=gen) * 2 * math.pi)
        self.proj = nn.Linear(2 * n, dim)
        self.type_embed = nn.Embedding(4, dim)  # 0/1 box corners, 2 negative point, 3 positive point

    def _encode(self, xy: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        scale = xy.new_tensor([w, h])
        coords = torch.nan_to_num(xy / scale, nan=0.0) * 2 - 1  # (..., 2) in [-1, 1]
        proj = coords @ self.frequencies  # (..., n)
        return self.proj(torch.cat([proj.sin(), proj.cos()], -1))

    def forward(self, boxes: torch.Tensor | None, points: torch.Tensor | None, prompt_tokens: torch.Tensor,
                size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``(B, S, D)`` and padding ``(B, S)`` (True = no token) for ``boxes`` ``(B, P, 4)``
        xyxy and ``points`` ``(B, P, K, 3)`` (x, y, label) in input pixels of ``size`` ``(H, W)``."""
        b, p, d = prompt_tokens.shape
        tokens, pads = [], []
        if boxes is not None:
            corners = boxes.reshape(b, p, 2, 2)  # (B, P, 2 corners, xy)
            t = self._encode(corners, size) + self.type_embed.weight[:2] + prompt_tokens[:, :, None]
            tokens.append(t.reshape(b, p * 2, d))
            pads.append(torch.isnan(corners).any(-1).reshape(b, p * 2))
        if points is not None:
            k = points.shape[2]
            label = torch.nan_to_num(points[..., 2], nan=0.0).clamp(0, 1).long() + 2  # (B, P, K)
            t = self._encode(points[..., :2], size) + self.type_embed(label) + prompt_tokens[:, :, None]
            tokens.append(t.reshape(b, p * k, d))
            pads.append(torch.isnan(points).any(-1).reshape(b, p * k))
        if not tokens:
            return prompt_tokens.new_zeros(b, 0, d), torch.zeros(b, 0, dtype=torch.bool, device=prompt_tokens.device)
        return torch.cat(tokens, 1), torch.cat(pads, 1)
