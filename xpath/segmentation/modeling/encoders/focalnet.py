"""FocalNet image encoder (Yang et al., "Focal Modulation Networks", NeurIPS 2022).

Focal modulation replaces self-attention: every token aggregates its context with a stack
of depth-wise convolutions of growing kernel (the *focal levels*) plus a global average,
mixes them with learned gates and modulates its own query with the result. Four stages
of such blocks give the hierarchical features at strides 4, 8, 16 and 32 that the pixel
decoder consumes; this is the encoder of PathSegmentor (FocalNet-L: embed 192, depths
2-2-18-2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["FOCALNET_SIZES", "FocalModulation", "FocalNetBlock", "FocalNetEncoder", "drop_path"]

#: The sizes of the FocalNet paper (Table 1 / detection models): embed dim and depths.
FOCALNET_SIZES = {
    "tiny": {"embed_dim": 96, "depths": (2, 2, 6, 2)},
    "small": {"embed_dim": 96, "depths": (2, 2, 18, 2)},
    "base": {"embed_dim": 128, "depths": (2, 2, 18, 2)},
    "large": {"embed_dim": 192, "depths": (2, 2, 18, 2)},
}


class FocalModulation(nn.Module):
    """Focal modulation of one token map.

    Parameters
    ----------
    dim : int
        Channels.
    focal_level : int
        Number of depth-wise context levels (besides the global one).
    focal_window : int
        Kernel of the first level; level ``k`` uses ``focal_window + focal_factor * k``.
    """

    def __init__(self, dim: int, *, focal_level: int = 2, focal_window: int = 3, focal_factor: int = 2,
                 normalize_modulator: bool = False) -> None:
        super().__init__()
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.f = nn.Linear(dim, 2 * dim + focal_level + 1)
        self.h = nn.Conv2d(dim, dim, kernel_size=1)
        self.proj = nn.Linear(dim, dim)
        self.focal_layers = nn.ModuleList()
        for k in range(focal_level):
            kernel = focal_factor * k + focal_window
            self.focal_layers.append(nn.Sequential(
                nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False), nn.GELU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, H, W, C) → (B, H, W, C)."""
        c = x.shape[-1]
        x = self.f(x).permute(0, 3, 1, 2)  # (B, 2C+L+1, H, W)
        q, ctx, gates = torch.split(x, (c, c, self.focal_level + 1), dim=1)
        ctx_all = 0
        for level, layer in enumerate(self.focal_layers):
            ctx = layer(ctx)  # (B, C, H, W), receptive field grows per level
            ctx_all = ctx_all + ctx * gates[:, level:level + 1]
        ctx_global = F.gelu(ctx.mean((2, 3), keepdim=True))  # (B, C, 1, 1)
        ctx_all = ctx_all + ctx_global * gates[:, self.focal_level:]
        if self.normalize_modulator:
            ctx_all = ctx_all / (self.focal_level + 1)
        out = q * self.h(ctx_all)  # (B, C, H, W)
        return self.proj(out.permute(0, 2, 3, 1))


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch of whole samples with probability ``rate``."""
    if rate == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - rate)
    return x * keep / (1 - rate)


class FocalNetBlock(nn.Module):
    """Pre-norm (or post-norm) residual block: focal modulation then an MLP."""

    def __init__(self, dim: int, *, mlp_ratio: float = 4.0, focal_level: int = 2, focal_window: int = 3,
                 use_layerscale: bool = False, layerscale_value: float = 1e-4, use_postln: bool = False,
                 normalize_modulator: bool = False, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.use_postln = use_postln
        self.drop_path_rate = drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.modulation = FocalModulation(dim, focal_level=focal_level, focal_window=focal_window,
                                          normalize_modulator=normalize_modulator)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        if use_layerscale:
            self.gamma_1 = nn.Parameter(torch.full((dim,), layerscale_value))
            self.gamma_2 = nn.Parameter(torch.full((dim,), layerscale_value))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, H, W, C) → (B, H, W, C)."""
        if self.use_postln:
            y = self.norm1(self.modulation(x))
        else:
            y = self.modulation(self.norm1(x))
        y = y if self.gamma_1 is None else self.gamma_1 * y
        x = x + drop_path(y, self.drop_path_rate, self.training)
        y = self.norm2(self.mlp(x)) if self.use_postln else self.mlp(self.norm2(x))
        y = y if self.gamma_2 is None else self.gamma_2 * y
        return x + drop_path(y, self.drop_path_rate, self.training)


class _Downsample(nn.Module):
    """Patch merging between stages (stride 2) or the stem (stride 4)."""

    def __init__(self, cin: int, cout: int, *, stem: bool, use_conv_embed: bool) -> None:
        super().__init__()
        if use_conv_embed:
            kernel, stride, padding = (7, 4, 3) if stem else (3, 2, 1)
        else:
            kernel = stride = 4 if stem else 2
            padding = 0
        self.proj = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) → (B, H/s, W/s, C')."""
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class FocalNetEncoder(nn.Module):
    """Four-stage FocalNet giving features at strides 4, 8, 16, 32.

    Parameters
    ----------
    embed_dim : int
        Channels of stage 1; stage ``i`` has ``embed_dim * 2**i``.
    depths : sequence of 4 int
        Blocks per stage.
    focal_level, focal_window : int
        Focal modulation settings shared by all stages.
    use_conv_embed, use_layerscale, use_postln, normalize_modulator : bool
        The stabilisers of the large FocalNets.
    drop_path_rate : float
        Stochastic depth of the last block; it rises linearly from 0 over the blocks.
    grad_checkpointing : bool
        Recompute block activations in backward (saves memory at 1024 px).

    Notes
    -----
    ``forward(x)`` takes ``(B, 3, H, W)`` with ``H, W`` multiples of 32 and returns a list of
    four tensors ``(B, C_i, H/s_i, W/s_i)``; ``channels`` and ``strides`` describe them.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, *, embed_dim: int = 96, depths: Sequence[int] = (2, 2, 6, 2), mlp_ratio: float = 4.0,
                 focal_level: int = 2, focal_window: int = 3, use_conv_embed: bool = False,
                 use_layerscale: bool = False, use_postln: bool = False, normalize_modulator: bool = False,
                 drop_path_rate: float = 0.0, grad_checkpointing: bool = False) -> None:
        super().__init__()
        if len(depths) != 4:
            raise ValueError(f"depths must have 4 stages, got {tuple(depths)}")
        dims = [embed_dim * 2**i for i in range(4)]
        self.channels = tuple(dims)
        self.grad_checkpointing = grad_checkpointing
        self.downsamples = nn.ModuleList(
            [_Downsample(3, dims[0], stem=True, use_conv_embed=use_conv_embed)]
            + [_Downsample(dims[i - 1], dims[i], stem=False, use_conv_embed=use_conv_embed) for i in range(1, 4)])
        total = sum(depths)
        rates = [drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        self.stages = nn.ModuleList([
            nn.ModuleList([FocalNetBlock(dims[i], mlp_ratio=mlp_ratio, focal_level=focal_level,
                                         focal_window=focal_window, use_layerscale=use_layerscale,
                                         use_postln=use_postln, normalize_modulator=normalize_modulator,
                                         drop_path_rate=rates[sum(depths[:i]) + j])
                           for j in range(depths[i])])
            for i in range(4)])
        self.out_norms = nn.ModuleList([nn.LayerNorm(d) for d in dims])
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` (B, 3, H, W) → ``[(B, C_i, H/s_i, W/s_i) for s_i in 4, 8, 16, 32]``."""
        outs = []
        for down, blocks, norm in zip(self.downsamples, self.stages, self.out_norms, strict=True):
            x = down(x)  # (B, h, w, C)
            for block in blocks:
                if self.grad_checkpointing and self.training:
                    x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            outs.append(norm(x).permute(0, 3, 1, 2).contiguous())  # (B, C, h, w)
            x = x.permute(0, 3, 1, 2)  # (B, C, h, w) for the next patch merging
        return outs


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
