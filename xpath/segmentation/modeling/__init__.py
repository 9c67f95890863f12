"""The text-prompted segmenter: its networks, its config, and how it is built, named and saved.

Networks (``torch`` modules passed into one composite, :class:`TextPromptSegmenter`):
``encoders/`` (FocalNet, EfficientNet-Lite0), ``text_encoder``, ``pixel_decoder``, ``joint``
(the multimodal module), ``prompt_encoder`` (boxes and points), ``heads``, ``segmenter``.
Around them: ``config`` (:class:`~xpath.segmentation.modeling.config.SegmenterConfig`, plain
data), ``registry`` (named configs), ``build`` (config or file → model, ``create_model``) and
``checkpoint`` (the file format). Names load on first use, so reading a config or the
registry does not import torch.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

_EXPORTS = {
    "FOCALNET_SIZES": ".encoders",
    "EfficientNetLiteEncoder": ".encoders",
    "FocalModulation": ".encoders",
    "FocalNetBlock": ".encoders",
    "FocalNetEncoder": ".encoders",
    "efficientnet_lite0_weights_path": ".encoders",
    "MLP": ".heads",
    "SegmentationHeads": ".heads",
    "JointLayer": ".joint",
    "JointModule": ".joint",
    "PixelDecoder": ".pixel_decoder",
    "sine_position_2d": ".pixel_decoder",
    "SpatialPromptEncoder": ".prompt_encoder",
    "ImageFeatures": ".segmenter",
    "SegmenterOutput": ".segmenter",
    "TextPromptSegmenter": ".segmenter",
    "upsample_stride4": ".segmenter",
    "HFTextEncoder": ".text_encoder",
    "TextEmbeddings": ".text_encoder",
    "default_text_encoder_path": ".text_encoder",
    "resolve_text_encoder_path": ".text_encoder",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
