"""Depthwise separable convolution (MobileNet v1, Howard et al. 2017, Fig. 3).

A standard k x k conv costs k²·C_in·C_out per output pixel; splitting it into a depthwise
k x k conv (one filter per channel, ``groups=C_in``) and a pointwise 1x1 conv costs
k²·C_in + C_in·C_out, about 8-9x less for k = 3. Each half is followed by BN and the
activation. Usage::

    block = DepthwiseSeparableConv(64, 128, stride=2)   # (B, 64, H, W) -> (B, 128, H/2, W/2)
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.conv_norm_act import ConvNormAct, NormLayer


class DepthwiseSeparableConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1,
                 kernel_size: int = 3, norm_layer: NormLayer = nn.BatchNorm2d,
                 act: str = "relu") -> None:
        super().__init__()
        self.dw = ConvNormAct(in_channels, in_channels, kernel_size, stride, groups=in_channels,
                              norm_layer=norm_layer, act=act)
        self.pw = ConvNormAct(in_channels, out_channels, 1, norm_layer=norm_layer, act=act)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))
