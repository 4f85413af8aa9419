"""Inverted residual blocks: MobileNetV2's ``InvertedResidual`` and the ``MBConv`` of
MobileNetV3 / EfficientNet.

An inverted residual (Sandler et al., CVPR 2018) expands a thin input with a 1x1 conv,
filters it with a depthwise conv, and projects back with a *linear* 1x1 conv (no activation:
a ReLU in the low-dimensional bottleneck destroys information, Sec. 3.2). The shortcut joins
the thin ends and exists exactly when the block keeps the shape (stride 1, in == out).
MBConv (MnasNet / MobileNetV3 / EfficientNet) adds squeeze-and-excitation after the depthwise
conv and, in EfficientNet, stochastic depth on the residual branch.

Attribute names follow torchvision (``conv`` for V2, ``block`` for MBConv) so checkpoints load.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.conv_norm_act import ConvNormAct, NormLayer
from archlab.layers.drop import DropPath
from archlab.layers.squeeze_excite import SqueezeExcite


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a scaled channel count to a multiple of ``divisor`` (TF-slim MobileNet rule).

    Rounds to the nearest multiple but never below ``min_value`` (default ``divisor``) and
    never more than 10% below ``value``, so width multipliers do not starve a layer.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand + BN + act] -> 3x3 depthwise + BN + act -> 1x1 + BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: float,
                 norm_layer: NormLayer = nn.BatchNorm2d, act: str = "relu6",
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_channels, hidden, 1, norm_layer=norm_layer, act=act))
        layers.append(ConvNormAct(hidden, hidden, 3, stride, groups=hidden,
                                  norm_layer=norm_layer, act=act))
        norm = norm_layer(out_channels)
        # Linear bottleneck: the projection has no activation.
        layers += [nn.Conv2d(hidden, out_channels, 1, bias=isinstance(norm, nn.Identity)), norm]
        self.conv = nn.Sequential(*layers)
        self.drop_path = DropPath(drop_path_rate)
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.drop_path(self.conv(x))
        return self.conv(x)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with optional squeeze-and-excitation.

    ``squeeze_channels=0`` leaves SE out. Families differ in the SE width rule
    (MobileNetV3: ``make_divisible(expanded // 4)``; EfficientNet: ``in_channels // 4``), gate
    (hard-sigmoid vs sigmoid) and activation, so those are arguments.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 expanded_channels: int, squeeze_channels: int = 0, act: str = "relu",
                 se_act: str = "relu", se_gate: str = "sigmoid",
                 norm_layer: NormLayer = nn.BatchNorm2d, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConv stride must be 1 or 2, got {stride}")
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expanded_channels != in_channels:
            layers.append(ConvNormAct(in_channels, expanded_channels, 1, norm_layer=norm_layer,
                                      act=act))
        layers.append(ConvNormAct(expanded_channels, expanded_channels, kernel_size, stride,
                                  groups=expanded_channels, norm_layer=norm_layer, act=act))
        if squeeze_channels > 0:
            layers.append(SqueezeExcite(expanded_channels, squeeze_channels, act=se_act,
                                        gate=se_gate))
        layers.append(ConvNormAct(expanded_channels, out_channels, 1, norm_layer=norm_layer,
                                  act=None))
        self.block = nn.Sequential(*layers)
        self.drop_path = DropPath(drop_path_rate)
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.drop_path(self.block(x))
        return self.block(x)
