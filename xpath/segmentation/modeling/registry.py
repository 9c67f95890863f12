"""Named model configs: ``@register_model`` builders, :func:`list_models` and :func:`get_config`.

Each registered name maps to a thin builder returning a :class:`SegmenterConfig` that holds
all its numbers; :func:`~xpath.segmentation.modeling.build.build_model` turns any config into
a network (SAM's ``build_sam`` / timm's ``@register_model`` pattern). Plain data: no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .config import EfficientNetEncoderConfig, FocalNetEncoderConfig, SegmenterConfig

__all__ = ["get_config", "list_models", "register_model", "xpath_base", "xpath_large", "xpath_small", "xpath_tiny"]

_REGISTRY: dict[str, Callable[[], SegmenterConfig]] = {}


def register_model(fn: Callable[[], SegmenterConfig]) -> Callable[[], SegmenterConfig]:
    """Decorator: register a config builder under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_REGISTRY)


def get_config(name: str, **overrides) -> SegmenterConfig:
    """The config registered as ``name`` with fields replaced by ``overrides``.

    An encoder setting is replaced with a whole encoder config, e.g.
    ``encoder=EfficientNetEncoderConfig(pretrained=False)``.

    Raises
    ------
    ValueError
        Unknown name (lists the known ones) or unknown override field.

    Examples
    --------
    >>> get_config("xpath_small").encoder
    EfficientNetEncoderConfig(pretrained=True)
    >>> get_config("xpath_tiny", num_queries=8).num_queries
    8
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    config = _REGISTRY[name]()
    if overrides:
        names = {f.name for f in dataclasses.fields(SegmenterConfig)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(f"unknown config fields {bad}; known: {sorted(names)}")
        config = dataclasses.replace(config, **overrides)
    return config


@register_model
def xpath_tiny() -> SegmenterConfig:
    """≤2 M trainable parameters, 256 px: a 4-stage FocalNet (embed 24) + frozen MiniLM, for tests on CPU."""
    return SegmenterConfig(
        name="xpath_tiny", image_size=256, mpp=0.5,
        encoder=FocalNetEncoderConfig(embed_dim=24, depths=(1, 1, 2, 1), focal_level=2, focal_window=3),
        text_encoder="minilm", text_frozen=True, text_dim=384, dim=64, mask_dim=32, num_queries=16, joint_layers=3,
        joint_levels=3, num_heads=4, ffn_dim=128, pixel_layers=1, pixel_levels=1, pixel_ffn_dim=128,
    )


@register_model
def xpath_small() -> SegmenterConfig:
    """The CPU default, 512 px: ImageNet EfficientNet-Lite0 + all-MiniLM-L6-v2 (frozen) and a light decoder."""
    return SegmenterConfig(
        name="xpath_small", image_size=512, mpp=0.5, encoder=EfficientNetEncoderConfig(pretrained=True),
        text_encoder="minilm", text_frozen=True, text_dim=384, dim=96, mask_dim=64, num_queries=32,
        joint_layers=3, joint_levels=3, num_heads=4, ffn_dim=384, pixel_layers=2, pixel_levels=1, pixel_ffn_dim=384,
    )


@register_model
def xpath_base() -> SegmenterConfig:
    """FocalNet-B (embed 128, 2-2-18-2) + BERT-base-sized text encoder, 1024 px, 256-wide decoder."""
    return SegmenterConfig(
        name="xpath_base", image_size=1024, mpp=0.25,
        encoder=FocalNetEncoderConfig(embed_dim=128, depths=(2, 2, 18, 2), focal_level=3, focal_window=3,
                                      drop_path_rate=0.2, grad_checkpointing=True),
        text_encoder="bert-base", text_frozen=False, text_dim=768, dim=256, mask_dim=256, num_queries=100,
        joint_layers=9, joint_levels=3, num_heads=8, ffn_dim=2048, pixel_layers=6, pixel_levels=2, pixel_ffn_dim=1024,
    )


@register_model
def xpath_large() -> SegmenterConfig:
    """The paper's scale: FocalNet-L (embed 192, 2-2-18-2) + BERT-base text encoder, 512-wide decoder, 1024 px."""
    return SegmenterConfig(
        name="xpath_large", image_size=1024, mpp=0.25,
        encoder=FocalNetEncoderConfig(embed_dim=192, depths=(2, 2, 18, 2), focal_level=3, focal_window=5,
                                      use_conv_embed=True, use_layerscale=True, use_postln=True, drop_path_rate=0.3,
                                      grad_checkpointing=True),
        text_encoder="bert-base", text_frozen=False, text_dim=768, dim=512, mask_dim=512, num_queries=100,
        joint_layers=10, joint_levels=3, num_heads=8, ffn_dim=2048, pixel_layers=6, pixel_levels=2, pixel_ffn_dim=2048,
    )
