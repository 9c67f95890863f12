"""Model configs, registered builders and ``create_model``.

Each registered name maps to a thin builder returning a :class:`SegmenterConfig`; the one
:func:`build_model` turns any config into a :class:`TextPromptSegmenter` (SAM's
``build_sam`` / timm's ``@register_model`` pattern).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .._device import resolve_device

__all__ = ["SegmenterConfig", "build_model", "create_model", "default_checkpoint", "get_config", "list_models",
           "register_model"]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SegmenterConfig:
    """Everything needed to rebuild a model; stored in its checkpoints.

    Attributes
    ----------
    name : str
        Registered name.
    image_size : int
        Square tile side (px) the model is trained and run at.
    mpp : float
        µm per pixel the model works at.
    mean, std : tuple of float
        RGB normalisation in [0, 1] units.
    encoder : str
        ``"focalnet"`` or ``"efficientnet_lite0"``.
    encoder_pretrained : bool
        Load the encoder's shipped ImageNet weights (EfficientNet-Lite0 only).
    embed_dim, depths, focal_level, focal_window, use_conv_embed, use_layerscale, use_postln, normalize_modulator
        FocalNet settings.
    drop_path_rate : float
        FocalNet stochastic depth (of the last block; linear from 0).
    text_encoder : str
        ``"minilm"``, ``"bert-base"`` or a local BERT directory.
    text_frozen : bool
        Freeze the text encoder (embeddings cached per text).
    text_dim : int
        Text-encoder width (384 MiniLM, 768 BERT-base).
    dim : int
        Width of the pixel decoder levels and the joint module.
    mask_dim : int
        Per-pixel embedding channels.
    num_queries, joint_layers, joint_levels, num_heads, ffn_dim : int
        Joint module: queries ``Q``, layers ``L``, levels cycled, heads, FFN width.
    pixel_layers, pixel_levels, pixel_ffn_dim : int
        Pixel-decoder transformer layers, the coarse levels they mix, their FFN width.
    grad_checkpointing : bool
        Recompute encoder activations in backward (large models).
    vocabulary : list of str
        Canonical prompts the model was trained with (empty until trained).
    """

    name: str
    image_size: int
    mpp: float
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    encoder: str = "focalnet"
    encoder_pretrained: bool = False
    embed_dim: int = 96
    depths: tuple = (2, 2, 6, 2)
    focal_level: int = 2
    focal_window: int = 3
    use_conv_embed: bool = False
    use_layerscale: bool = False
    use_postln: bool = False
    normalize_modulator: bool = False
    drop_path_rate: float = 0.0
    text_encoder: str = "minilm"
    text_frozen: bool = True
    text_dim: int = 384
    dim: int = 256
    mask_dim: int = 256
    num_queries: int = 100
    joint_layers: int = 9
    joint_levels: int = 3
    num_heads: int = 8
    ffn_dim: int = 2048
    pixel_layers: int = 6
    pixel_levels: int = 2
    pixel_ffn_dim: int = 1024
    grad_checkpointing: bool = False
    vocabulary: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain-Python dict (lists for tuples), safe for ``torch.load(weights_only=True)``."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> SegmenterConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SegmenterConfig fields {unknown}; known: {sorted(names)}")
        d = dict(d)
        for k in ("mean", "std", "depths"):
            if k in d:
                d[k] = tuple(d[k])
        if "vocabulary" in d:
            d["vocabulary"] = list(d["vocabulary"])
        return cls(**d)


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

    Raises
    ------
    ValueError
        Unknown name (lists the known ones) or unknown override field.
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
        name="xpath_tiny", image_size=256, mpp=0.5, encoder="focalnet", embed_dim=24, depths=(1, 1, 2, 1),
        focal_level=2, focal_window=3, text_encoder="minilm", text_frozen=True, text_dim=384, dim=64, mask_dim=32,
        num_queries=16, joint_layers=3, joint_levels=3, num_heads=4, ffn_dim=128, pixel_layers=1, pixel_levels=1,
        pixel_ffn_dim=128,
    )


@register_model
def xpath_small() -> SegmenterConfig:
    """The CPU default, 512 px: ImageNet EfficientNet-Lite0 + all-MiniLM-L6-v2 (frozen) and a light decoder."""
    return SegmenterConfig(
        name="xpath_small", image_size=512, mpp=0.5, encoder="efficientnet_lite0", encoder_pretrained=True,
        text_encoder="minilm", text_frozen=True, text_dim=384, dim=96, mask_dim=64, num_queries=32,
        joint_layers=3, joint_levels=3, num_heads=4, ffn_dim=384, pixel_layers=2, pixel_levels=1, pixel_ffn_dim=384,
    )


@register_model
def xpath_base() -> SegmenterConfig:
    """FocalNet-B (embed 128, 2-2-18-2) + BERT-base-sized text encoder, 1024 px, 256-wide decoder."""
    return SegmenterConfig(
        name="xpath_base", image_size=1024, mpp=0.25, encoder="focalnet", embed_dim=128, depths=(2, 2, 18, 2),
        focal_level=3, focal_window=3, drop_path_rate=0.2, text_encoder="bert-base", text_frozen=False,
        text_dim=768, dim=256,
        mask_dim=256, num_queries=100, joint_layers=9, joint_levels=3, num_heads=8, ffn_dim=2048, pixel_layers=6,
        pixel_levels=2, pixel_ffn_dim=1024, grad_checkpointing=True,
    )


@register_model
def xpath_large() -> SegmenterConfig:
    """The paper's scale: FocalNet-L (embed 192, 2-2-18-2) + BERT-base text encoder, 512-wide decoder, 1024 px."""
    return SegmenterConfig(
        name="xpath_large", image_size=1024, mpp=0.25, encoder="focalnet", embed_dim=192, depths=(2, 2, 18, 2),
        focal_level=3, focal_window=5, use_conv_embed=True, use_layerscale=True, use_postln=True,
        drop_path_rate=0.3, text_encoder="bert-base", text_frozen=False, text_dim=768, dim=512, mask_dim=512,
        num_queries=100, joint_layers=10, joint_levels=3, num_heads=8, ffn_dim=2048, pixel_layers=6, pixel_levels=2,
        pixel_ffn_dim=2048, grad_checkpointing=True,
    )


def build_model(config: SegmenterConfig, *, lazy_text: bool = False):
    """Build a :class:`~xpath.segmentation.modeling.TextPromptSegmenter` from ``config`` (on CPU).

    ``lazy_text``: a frozen text encoder loads its weights on the first prompt that is not
    in its cache (see :class:`~xpath.segmentation.modeling.HFTextEncoder`).
    """
    from .modeling import (
        EfficientNetLiteEncoder,
        FocalNetEncoder,
        HFTextEncoder,
        JointModule,
        PixelDecoder,
        SegmentationHeads,
        SpatialPromptEncoder,
        TextPromptSegmenter,
    )

    if config.encoder == "focalnet":
        encoder = FocalNetEncoder(
            embed_dim=config.embed_dim, depths=config.depths, focal_level=config.focal_level,
            focal_window=config.focal_window, use_conv_embed=config.use_conv_embed,
            use_layerscale=config.use_layerscale, use_postln=config.use_postln,
            normalize_modulator=config.normalize_modulator, drop_path_rate=config.drop_path_rate,
            grad_checkpointing=config.grad_checkpointing)
    elif config.encoder == "efficientnet_lite0":
        encoder = EfficientNetLiteEncoder(pretrained=config.encoder_pretrained)
    else:
        raise ValueError(f"config.encoder must be 'focalnet' or 'efficientnet_lite0', got {config.encoder!r}")
    lazy = bool(lazy_text and config.text_frozen)
    text = HFTextEncoder(config.text_encoder, frozen=config.text_frozen, lazy=lazy,
                         dim=config.text_dim if lazy else None)
    if text.dim != config.text_dim:
        raise ValueError(f"config.text_dim={config.text_dim} but the text encoder {config.text_encoder!r} "
                         f"has width {text.dim}")
    pixel = PixelDecoder(encoder.channels, dim=config.dim, mask_dim=config.mask_dim,
                         transformer_layers=config.pixel_layers, transformer_levels=config.pixel_levels,
                         num_heads=config.num_heads, ffn_dim=config.pixel_ffn_dim)
    joint = JointModule(config.dim, num_queries=config.num_queries, num_layers=config.joint_layers,
                        num_levels=config.joint_levels, num_heads=config.num_heads, ffn_dim=config.ffn_dim)
    spatial = SpatialPromptEncoder(config.dim)
    heads = SegmentationHeads(config.dim, config.mask_dim, config.dim)
    return TextPromptSegmenter(encoder, pixel, text, joint, spatial, heads, config)


WEIGHTS_DIR = Path(__file__).with_name("weights")


def default_checkpoint(name: str) -> Path | None:
    """The shipped checkpoint of model ``name``, checked against its SHA-256, or ``None``.

    Looks for ``{name}.pt`` (with ``{name}.pt.sha256`` beside it) in ``$XPATH_WEIGHTS``
    first, then in the package's ``weights/`` folder. A file whose digest differs from its
    ``.sha256`` raises :class:`~xpath.segmentation.CheckpointError`.
    """
    from ._checkpoint import verify_checksum

    folders = [Path(os.environ["XPATH_WEIGHTS"])] if os.environ.get("XPATH_WEIGHTS") else []
    for folder in [*folders, WEIGHTS_DIR]:
        path = folder / f"{name}.pt"
        digest = path.with_name(path.name + ".sha256")
        if path.is_file():
            if not digest.is_file():
                raise FileNotFoundError(f"{path} has no checksum file {digest.name} beside it")
            return verify_checksum(path, digest.read_text().split()[0])
    return None


def create_model(name: str, checkpoint: str | Path | None = None, device=None, **overrides):
    """Create a registered model, optionally loading a checkpoint.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    checkpoint : str or Path, optional
        A file written by :func:`~xpath.segmentation.save_checkpoint`; its config must be of
        model ``name`` (the checkpoint's config wins over the registered one). ``"default"``:
        the trained weights shipped with xpath (:func:`default_checkpoint`); an error when
        none ship for ``name``. ``None``: pretrained encoders, untrained decoder.
    device : str or torch.device, optional
        ``None`` picks CUDA, then MPS, then CPU.
    **overrides
        Config fields to replace (e.g. ``text_encoder="/path/to/PubMedBERT"``,
        ``encoder_pretrained=False``); not allowed together with ``checkpoint``.

    Returns
    -------
    TextPromptSegmenter

    Raises
    ------
    ValueError
        Unknown name (lists the known ones), unknown override, or a checkpoint of another model.

    Examples
    --------
    >>> from xpath.segmentation import create_model, list_models
    >>> "xpath_tiny" in list_models()
    True
    """
    config = get_config(name, **overrides)
    if isinstance(checkpoint, str) and checkpoint == "default":
        checkpoint = default_checkpoint(name)
        if checkpoint is None:
            raise FileNotFoundError(f"no trained checkpoint of {name!r} ships with xpath; looked in "
                                    f"$XPATH_WEIGHTS and {WEIGHTS_DIR}")
    if checkpoint is not None:
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} cannot be combined with checkpoint=")
        from ._checkpoint import load_checkpoint

        model = load_checkpoint(checkpoint, device=device)
        if model.config.name != name:
            raise ValueError(f"checkpoint {str(checkpoint)!r} holds model {model.config.name!r}, not {name!r}")
        return model
    model = build_model(config)
    return model.to(resolve_device(device))

