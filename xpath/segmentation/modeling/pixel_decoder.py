"""Pixel decoder: multi-scale encoder features → context-rich levels + per-pixel embeddings.

Lateral 1×1 projections bring the four encoder levels (strides 4, 8, 16, 32) to one
width; a few transformer-encoder layers mix the tokens of the coarsest levels (full
self-attention with 2-D sine positions and level embeddings); an FPN top-down path with
depth-wise-separable 3×3 convolutions carries that context to stride 4, where a 1×1
projection gives the per-pixel mask embeddings (and a second one the per-pixel
embeddings of the distance head). Everything at stride 4 is depth-wise separable or 1×1:
that level has 16× the pixels of stride 16 and dominates the cost.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["PixelDecoder", "sine_position_2d"]


def sine_position_2d(h: int, w: int, dim: int, *, device=None, dtype=None) -> torch.Tensor:
    """2-D sine/cosine positions ``(h*w, dim)`` (DETR style, normalised coordinates).

    Cached per shape, device and dtype (every decode of a prompt needs them; computing them
    was a quarter of a decode on CPU). The result is shared: don't modify it in place.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return _sine_position_2d(int(h), int(w), int(dim), device, dtype or torch.float32,
                             torch.is_inference_mode_enabled())


@functools.lru_cache(maxsize=64)
def _sine_position_2d(h: int, w: int, dim: int, device: torch.device, dtype: torch.dtype,
                      inference: bool) -> torch.Tensor:
    # ``inference`` keys the cache: an inference-mode tensor must not reach a training graph.
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(10000.0) / quarter))
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
    ys = ys[:, None] * freq[None]  # (h, dim/4)
    xs = xs[:, None] * freq[None]  # (w, dim/4)
    pos = torch.cat([
        ys.sin()[:, None].expand(h, w, quarter), ys.cos()[:, None].expand(h, w, quarter),
        xs.sin()[None].expand(h, w, quarter), xs.cos()[None].expand(h, w, quarter)], dim=-1)
    return pos.reshape(h * w, dim).to(dtype).contiguous()


def _norm(dim: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, dim // 4) if dim >= 8 else 1, dim)


class _SeparableConv(nn.Sequential):
    """Depth-wise 3×3 → point-wise 1×1 → GroupNorm → GELU."""

    def __init__(self, dim: int) -> None:
        super().__init__(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                         nn.Conv2d(dim, dim, 1, bias=False), _norm(dim), nn.GELU())


class PixelDecoder(nn.Module):
    """FPN + transformer-encoder pixel decoder.

    Parameters
    ----------
    in_channels : sequence of 4 int
        Encoder channels at strides 4, 8, 16, 32.
    dim : int
        Width of every level after projection.
    mask_dim : int
        Channels of the per-pixel embeddings (stride 4).
    transformer_layers : int
        Transformer-encoder layers over the coarse levels (0 = pure FPN).
    transformer_levels : int
        How many of the coarsest levels (1–3: stride 32, then 16, then 8) they mix.
    num_heads, ffn_dim : int
        Transformer settings.

    Notes
    -----
    ``forward(features)`` returns ``(levels, pixel, pixel_distance)``: ``levels`` is a list of
    ``(B, dim, H/s, W/s)`` at strides 32, 16, 8 (coarse to fine, for the joint module);
    ``pixel`` and ``pixel_distance`` are ``(B, mask_dim, H/4, W/4)``.
    """

    def __init__(self, in_channels: Sequence[int], *, dim: int = 256, mask_dim: int = 256,
                 transformer_layers: int = 2, transformer_levels: int = 1, num_heads: int = 8,
                 ffn_dim: int = 1024) -> None:
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f"in_channels must list 4 levels, got {tuple(in_channels)}")
        if not 1 <= transformer_levels <= 3:
            raise ValueError(f"transformer_levels must be in 1..3, got {transformer_levels}")
        self.dim = dim
        self.transformer_levels = transformer_levels
        # index 0 = stride 4 ... 3 = stride 32
        self.lateral = nn.ModuleList([nn.Sequential(nn.Conv2d(c, dim, 1, bias=False), _norm(dim))
                                      for c in in_channels])
        self.level_embed = nn.Parameter(torch.zeros(transformer_levels, dim))
        self.transformer = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, num_heads, ffn_dim, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(transformer_layers)])
        self.transformer_norm = nn.LayerNorm(dim) if transformer_layers else nn.Identity()
        self.output = nn.ModuleList([_SeparableConv(dim) for _ in range(3)])  # strides 16, 8, 4
        self.mask_proj = nn.Conv2d(dim, mask_dim, 1)
        self.distance_proj = nn.Conv2d(dim, mask_dim, 1)
        nn.init.normal_(self.level_embed, std=0.02)

    def _mix_coarse(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        """Self-attention over the tokens of the coarse ``maps`` (coarse → fine)."""
        shapes = [m.shape[-2:] for m in maps]
        tokens, pos = [], []
        for i, m in enumerate(maps):
            h, w = m.shape[-2:]
            tokens.append(m.flatten(2).transpose(1, 2))  # (B, h*w, dim)
            pos.append(sine_position_2d(h, w, self.dim, device=m.device, dtype=m.dtype) + self.level_embed[i])
        x = torch.cat(tokens, 1)  # (B, N, dim)
        p = torch.cat(pos, 0)[None]  # (1, N, dim)
        for layer in self.transformer:
            x = layer(x + p) if layer is self.transformer[0] else layer(x)
        x = self.transformer_norm(x)
        out, start = [], 0
        for (h, w), m in zip(shapes, maps, strict=True):
            n = h * w
            out.append(x[:, start:start + n].transpose(1, 2).reshape(m.shape))  # (B, dim, h, w)
            start += n
        return out

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        lat = [proj(f) for proj, f in zip(self.lateral, features, strict=True)]  # stride 4..32, (B, dim, h, w)
        coarse = lat[::-1][: self.transformer_levels]  # stride 32 first
        if len(self.transformer):
            coarse = self._mix_coarse(coarse)
        maps = coarse[:1]  # top of the pyramid, stride 32
        for i in range(1, 4):  # strides 16, 8, 4
            lateral = coarse[i] if i < len(coarse) else lat[3 - i]
            up = F.interpolate(maps[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            maps.append(self.output[i - 1](lateral + up))
        levels = maps[:3]  # strides 32, 16, 8
        fine = maps[3]  # (B, dim, H/4, W/4)
        return levels, self.mask_proj(fine), self.distance_proj(fine)
