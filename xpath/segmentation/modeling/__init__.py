"""The text-prompted segmenter: its networks, its config, and how it is built, named and saved.

Networks (``torch`` modules passed into one composite, :class:`TextPromptSegmenter`):
``encoders/`` (FocalNet, EfficientNet-Lite0), ``text_encoder``, ``pixel_decoder``, ``joint``
(the multimodal module), ``prompt_encoder`` (boxes and points), ``box_prior``, ``heads``,
``segmenter``.
Around them: ``config`` (:class:`~xpath.segmentation.modeling.config.SegmenterConfig`, plain
data), ``registry`` (named configs), ``build`` (config or file → model, ``create_model``) and
``checkpoint`` (the file format). Names load on first use, so reading a config or the
registry does not import torch.
"""

from __future__ import annotations

from ..._lazy import lazy_exports

# module → the public names it holds
_MODULES = {
    ".encoders": ("FOCALNET_SIZES", "EfficientNetLiteEncoder", "FocalModulation", "FocalNetBlock", "FocalNetEncoder",
                  "efficientnet_lite0_weights_path"),
    ".heads": ("MLP", "SegmentationHeads"),
    ".joint": ("JointLayer", "JointModule"),
    ".pixel_decoder": ("PixelDecoder", "sine_position_2d"),
    ".prompt_encoder": ("SpatialPromptEncoder",),
    ".segmenter": ("ImageFeatures", "SegmenterOutput", "TextPromptSegmenter", "upsample_stride4"),
    ".text_encoder": ("HFTextEncoder", "TextEmbeddings", "default_text_encoder_path", "resolve_text_encoder_path"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
