"""Squeeze-and-excitation (Hu et al., CVPR 2018): reweight channels by a gate computed from
their global average.

Parameter names (``fc1``, ``fc2`` as 1x1 convs) follow torchvision's ``SqueezeExcitation`` so
MobileNetV3 / EfficientNet checkpoints load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze_channels: int, act: str = "relu",
                 gate: str = "sigmoid") -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.activation = create_act(act)
        self.scale_activation = create_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)  # (B, C, H, W) -> (B, C, 1, 1)
        scale = self.fc2(self.activation(self.fc1(scale)))
        return x * self.scale_activation(scale)
