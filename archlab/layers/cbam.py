"""CBAM, the Convolutional Block Attention Module (Woo et al., ECCV 2018).

Two gates applied in sequence (the paper's Fig. 1 and Eq. 1, channel first performed best):

* channel attention ``Mc(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``, one MLP shared by
  both pooled descriptors, hidden width ``C / reduction`` (paper: reduction 16);
* spatial attention ``Ms(F) = sigmoid(conv7x7([AvgPool_c(F); MaxPool_c(F)]))`` where the pools
  run across channels, giving a 2-channel map.

``F' = Mc(F) * F`` then ``F'' = Ms(F') * F'``. In a residual block it sits where SE does: on the
residual branch, after the last norm, before the addition. Usage::

    attn = CBAM(256)                 # (B, 256, H, W) -> (B, 256, H, W)
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, act: str = "relu") -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        # The shared MLP as 1x1 convs so it applies to (B, C, 1, 1) descriptors directly.
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = create_act(act)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)  # (B, C, H, W) -> (B, C, 1, 1)
        mx = x.amax(dim=(2, 3), keepdim=True)
        gate = self.fc2(self.act(self.fc1(avg))) + self.fc2(self.act(self.fc1(mx)))
        return x * torch.sigmoid(gate)


class SpatialAttention(nn.Module):
    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"CBAM spatial kernel_size must be odd to keep H, W; "
                             f"got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, C, H, W) -> (B, 2, H, W): mean and max over channels
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))  # (B, 1, H, W) gate broadcast over C


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7,
                 act: str = "relu") -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, act)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
