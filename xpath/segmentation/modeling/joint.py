"""The joint multimodal module of PathSegmentor.

Learnable queries (and one *prompt token* per prompt, which carries the presence and
distance heads) cross-attend to the image features of one pixel-decoder level, then
self-attend together with the projected text tokens (and spatial-prompt tokens) —
``self-attention over [queries ‖ text tokens (‖ spatial tokens)]`` — then pass an FFN.
``L`` such layers cycle over the levels at strides 32, 16, 8 (coarse to fine).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .pixel_decoder import sine_position_2d

__all__ = ["JointLayer", "JointModule"]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, N, D)`` → ``(B, heads, N, D / heads)``."""
    return x.unflatten(-1, (heads, x.shape[-1] // heads)).transpose(1, 2)


class JointLayer(nn.Module):
    """Cross-attention (latents → image) → self-attention (latents ‖ context) → FFN, pre-norm."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim))

    def forward(self, latents: torch.Tensor, latent_pos: torch.Tensor, memory: torch.Tensor,
                memory_pos: torch.Tensor, context: torch.Tensor, context_pad: torch.Tensor,
                memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer.

        ``latents`` (B, N, D) with positions ``latent_pos`` (B or 1, N, D); ``memory`` (B, M, D)
        image tokens with ``memory_pos`` (1, M, D); ``context`` (B, T, D) text/spatial tokens with
        ``context_pad`` (B, T) True at padding; ``memory_kv`` the cross-attention's projected
        keys and values of the memory (:meth:`memory_kv`), when already computed. Returns the
        updated ``(latents, context)``.
        """
        q = self.norm_cross(latents) + latent_pos
        if memory_kv is None:
            latents = latents + self.cross(q, memory + memory_pos, memory, need_weights=False)[0]
        else:
            latents = latents + self._cross_projected(q, *memory_kv)
        n = latents.shape[1]
        seq = torch.cat([latents, context], 1)  # (B, N+T, D)
        pad = torch.cat([context_pad.new_zeros(latents.shape[:2]), context_pad], 1)  # (B, N+T)
        pos = torch.cat([latent_pos.expand(latents.shape[0], -1, -1), torch.zeros_like(context)], 1)
        s = self.norm_self(seq)
        seq = seq + _attention(self.self_attn, s + pos, s + pos, s, key_padding=pad)
        seq = seq + self.ffn(self.norm_ffn(seq))
        return seq[:, :n], seq[:, n:]

    def memory_kv(self, memory: torch.Tensor, memory_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cross-attention's keys and values of the image tokens, split into heads: they depend on the image
        only, so decoding more prompts against the same image can reuse them."""
        return _project(self.cross, memory + memory_pos, 1), _project(self.cross, memory, 2)

    def _cross_projected(self, query: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``self.cross(query, key, value)`` with the keys and values already projected (eval: no dropout)."""
        return _attend(self.cross, _project(self.cross, query, 0), k, v)


def _project(attn: nn.MultiheadAttention, x: torch.Tensor, which: int) -> torch.Tensor:
    """``x`` (B, N, D) through ``attn``'s query (``which`` 0), key (1) or value (2) projection, split into heads."""
    d = x.shape[-1]
    w, b = attn.in_proj_weight[which * d: (which + 1) * d], attn.in_proj_bias[which * d: (which + 1) * d]
    return _heads(F.linear(x, w, b), attn.num_heads)


def _attend(attn: nn.MultiheadAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Heads ``(B, heads, N, d)`` attended (``mask`` True where a query may see a key) and projected out by ``attn``
    (with its attention dropout while training)."""
    drop = attn.dropout if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop).transpose(1, 2).flatten(2)
    return attn.out_proj(out)


def _attention(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *,
               key_padding: torch.Tensor) -> torch.Tensor:
    """``attn(query, key, value, key_padding_mask=key_padding, need_weights=False)[0]`` by
    ``scaled_dot_product_attention``: the module's own check of the mask imports sympy (0.65-0.78 s per process)."""
    q, k, v = (_project(attn, x, i) for i, x in enumerate((query, key, value)))
    return _attend(attn, q, k, v, ~key_padding[:, None, None, :])


class JointModule(nn.Module):
    """``L`` joint layers over the multi-scale levels.

    Parameters
    ----------
    dim : int
        Width.
    num_queries : int
        Learnable object queries ``Q`` (the candidate masks).
    num_layers : int
        ``L``.
    num_levels : int
        Pixel-decoder levels cycled through (1–3, coarse first).
    num_heads, ffn_dim : int
        Attention heads and FFN width.
    """

    def __init__(self, dim: int, *, num_queries: int = 100, num_layers: int = 9, num_levels: int = 3,
                 num_heads: int = 8, ffn_dim: int = 2048) -> None:
        super().__init__()
        self.dim = dim
        self.num_levels = num_levels
        self.query_feat = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.query_pos = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.prompt_pos = nn.Parameter(torch.randn(1, dim) * 0.02)  # marks prompt tokens among latents
        self.level_embed = nn.Parameter(torch.randn(num_levels, dim) * 0.02)
        self.layers = nn.ModuleList([JointLayer(dim, num_heads, ffn_dim) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, levels: list[torch.Tensor], prompt_tokens: torch.Tensor, context: torch.Tensor,
                context_pad: torch.Tensor, *, cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the layers.

        Parameters
        ----------
        levels : list of torch.Tensor
            ``(B, D, h, w)`` image levels, coarse first (at least ``num_levels``).
        prompt_tokens : torch.Tensor
            ``(B, P, D)`` one token per prompt.
        context : torch.Tensor
            ``(B, T, D)`` projected text tokens ‖ spatial tokens; ``context_pad`` ``(B, T)`` True at padding.
        cache : dict, optional
            Holds each layer's projected image keys/values across calls on the same ``levels``
            (inference only: the caller passes ``None`` while training).

        Returns
        -------
        queries : torch.Tensor
            ``(B, Q, D)``.
        prompts : torch.Tensor
            ``(B, P, D)`` the prompt tokens after the layers.
        """
        b = prompt_tokens.shape[0]
        q = self.query_feat.shape[0]
        memories = []
        for i, level in enumerate(levels[: self.num_levels]):
            h, w = level.shape[-2:]
            tokens = level.flatten(2).transpose(1, 2)  # (B, h*w, D)
            pos = sine_position_2d(h, w, self.dim, device=level.device, dtype=level.dtype) + self.level_embed[i]
            memories.append((tokens, pos[None]))  # pos (1, h*w, D)
        latents = torch.cat([self.query_feat[None].expand(b, -1, -1), prompt_tokens], 1)  # (B, Q+P, D)
        latent_pos = torch.cat([self.query_pos, self.prompt_pos.expand(prompt_tokens.shape[1], -1)], 0)[None]
        for i, layer in enumerate(self.layers):
            memory, memory_pos = memories[i % len(memories)]
            kv = None
            if cache is not None:
                kv = cache.get(i)
                if kv is None:
                    kv = cache[i] = layer.memory_kv(memory, memory_pos)
            latents, context = layer(latents, latent_pos, memory, memory_pos, context, context_pad, memory_kv=kv)
        latents = self.norm(latents)
        return latents[:, :q], latents[:, q:]
