"""Network modules of the text-prompted segmenter (image/text encoders, pixel decoder, joint module, heads)."""

from .encoders import (
    FOCALNET_SIZES,
    EfficientNetLiteEncoder,
    FocalModulation,
    FocalNetBlock,
    FocalNetEncoder,
    efficientnet_lite0_weights_path,
)
from .heads import MLP, SegmentationHeads
from .joint import JointLayer, JointModule
from .pixel_decoder import PixelDecoder, sine_position_2d
from .prompt_encoder import SpatialPromptEncoder
from .segmenter import ImageFeatures, SegmenterOutput, TextPromptSegmenter, upsample_stride4
from .text_encoder import (
    HFTextEncoder,
    TextEmbeddings,
    default_text_encoder_path,
    resolve_text_encoder_path,
)

__all__ = [
    "FOCALNET_SIZES", "MLP", "EfficientNetLiteEncoder", "FocalModulation", "FocalNetBlock", "FocalNetEncoder",
    "HFTextEncoder", "ImageFeatures", "JointLayer", "JointModule", "PixelDecoder", "SegmentationHeads",
    "SegmenterOutput", "SpatialPromptEncoder", "TextEmbeddings", "TextPromptSegmenter", "default_text_encoder_path",
    "efficientnet_lite0_weights_path", "resolve_text_encoder_path", "sine_position_2d", "upsample_stride4",
]
