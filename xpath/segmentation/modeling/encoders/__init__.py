"""Image encoders: each maps ``(B, 3, H, W)`` to four feature maps at strides 4, 8, 16 and 32.

:class:`FocalNetEncoder` is the paper's encoder (random init: no FocalNet weights ship);
:class:`EfficientNetLiteEncoder` loads the ImageNet EfficientNet-Lite0 of a registry package.
Both expose ``channels`` (the four widths) for the pixel decoder.
"""

from .efficientnet import EfficientNetLiteEncoder, efficientnet_lite0_weights_path
from .focalnet import FOCALNET_SIZES, FocalModulation, FocalNetBlock, FocalNetEncoder

__all__ = ["FOCALNET_SIZES", "EfficientNetLiteEncoder", "FocalModulation", "FocalNetBlock", "FocalNetEncoder",
           "efficientnet_lite0_weights_path"]
