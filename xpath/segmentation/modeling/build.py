"""Making a segmenter: from a config (:func:`build_model`), a checkpoint file (:func:`load_checkpoint`) or a name.

:func:`create_model` is what users call: a registered name
(:mod:`~xpath.segmentation.modeling.registry`), optionally with a checkpoint
(:mod:`~xpath.segmentation.modeling.checkpoint`, or ``"default"``: the shipped weights).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..._device import resolve_device
from ..support import vocabulary_from_payload
from .checkpoint import (
    WEIGHTS_DIR,
    CheckpointError,
    default_checkpoint,
    load_weights,
    read_checkpoint,
    text_encoder_excluded,
    verify_checksum,
)
from .config import EfficientNetEncoderConfig, EncoderConfig, FocalNetEncoderConfig, SegmenterConfig
from .encoders import EfficientNetLiteEncoder, FocalNetEncoder
from .heads import SegmentationHeads
from .joint import JointModule
from .pixel_decoder import PixelDecoder
from .prompt_encoder import SpatialPromptEncoder
from .registry import get_config, list_models
from .segmenter import TextPromptSegmenter
from .text_encoder import HFTextEncoder

__all__ = ["build_encoder", "build_model", "create_model", "load_checkpoint"]


def build_encoder(config: EncoderConfig):
    """The image encoder of ``config`` (FocalNet at random init; EfficientNet-Lite0 ImageNet weights if asked)."""
    if isinstance(config, FocalNetEncoderConfig):
        return FocalNetEncoder(
            embed_dim=config.embed_dim, depths=config.depths, focal_level=config.focal_level,
            focal_window=config.focal_window, use_conv_embed=config.use_conv_embed,
            use_layerscale=config.use_layerscale, use_postln=config.use_postln,
            normalize_modulator=config.normalize_modulator, drop_path_rate=config.drop_path_rate,
            grad_checkpointing=config.grad_checkpointing)
    if isinstance(config, EfficientNetEncoderConfig):
        return EfficientNetLiteEncoder(pretrained=config.pretrained)
    raise TypeError(f"config must be an encoder config, got {type(config).__name__}")


def build_model(config: SegmenterConfig, *, lazy_text: bool = False) -> TextPromptSegmenter:
    """Build a :class:`~xpath.segmentation.modeling.TextPromptSegmenter` from ``config`` (on CPU).

    ``lazy_text``: a frozen text encoder loads its weights on the first prompt that is not
    in its cache (see :class:`~xpath.segmentation.modeling.HFTextEncoder`).
    """
    encoder = build_encoder(config.encoder)
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


def load_checkpoint(path: str | os.PathLike, *, device=None, expected_sha256: str | None = None):
    """Rebuild the model stored in ``path`` and load its weights strictly.

    Parameters
    ----------
    path : str or PathLike
    device : str or torch.device, optional
        ``None`` picks CUDA, then MPS, then CPU.
    expected_sha256 : str, optional
        Verify the file's SHA-256 first (for shipped weights).

    Returns
    -------
    TextPromptSegmenter
        In eval mode.

    Raises
    ------
    FileNotFoundError, CheckpointError
        See :func:`~xpath.segmentation.modeling.checkpoint.read_checkpoint`; also an invalid
        config, missing/unexpected keys or shape mismatches.
    """
    if expected_sha256 is not None:
        verify_checksum(path, expected_sha256)
    payload = read_checkpoint(path)
    try:
        config = SegmenterConfig.from_dict(payload["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: invalid config: {err}") from err
    config.vocabulary = list(payload["vocabulary"])
    model = build_model(config, lazy_text=text_encoder_excluded(payload))
    load_weights(model, payload, path)
    model.trained_vocabulary = vocabulary_from_payload(payload) if "trained_vocabulary" in payload else None
    return model.to(resolve_device(device)).eval()


def create_model(name: str, checkpoint: str | Path | None = None, device=None, **overrides) -> TextPromptSegmenter:
    """Create a registered model, optionally loading a checkpoint.

    Parameters
    ----------
    name : str or Path
        One of :func:`~xpath.segmentation.list_models`, or a checkpoint file (``.pt``), e.g. one
        written by :func:`~xpath.segmentation.finetune`: the model it holds, whatever its name.
    checkpoint : str or Path, optional
        A file written by :func:`~xpath.segmentation.save_checkpoint`; its config must be of
        model ``name`` (the checkpoint's config wins over the registered one). ``"default"``:
        the trained weights shipped with xpath (:func:`~xpath.segmentation.default_checkpoint`);
        an error when none ship for ``name``. ``None``: pretrained encoders, untrained decoder.
    device : str or torch.device, optional
        ``None`` picks CUDA, then MPS, then CPU.
    **overrides
        Config fields to replace (e.g. ``text_encoder="/path/to/PubMedBERT"``,
        ``encoder=EfficientNetEncoderConfig(pretrained=False)``); not allowed together with
        ``checkpoint``.

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
    if isinstance(name, os.PathLike) or (isinstance(name, str) and name not in list_models()
                                         and (name.endswith((".pt", ".pth", ".ckpt")) or Path(name).is_file())):
        if checkpoint is not None or overrides:
            raise ValueError(f"create_model({str(name)!r}) loads that checkpoint: it takes no checkpoint= or overrides")
        return load_checkpoint(name, device=device)
    config = get_config(name, **overrides)
    if isinstance(checkpoint, str) and checkpoint == "default":
        checkpoint = default_checkpoint(name)
        if checkpoint is None:
            raise FileNotFoundError(f"no trained checkpoint of {name!r} ships with xpath; looked in "
                                    f"$XPATH_WEIGHTS and {WEIGHTS_DIR}")
    if checkpoint is not None:
        if overrides:
            raise ValueError(f"overrides {sorted(overrides)} cannot be combined with checkpoint=")
        model = load_checkpoint(checkpoint, device=device)
        if model.config.name != name:
            raise ValueError(f"checkpoint {str(checkpoint)!r} holds model {model.config.name!r}, not {name!r}")
        return model
    return build_model(config).to(resolve_device(device))
