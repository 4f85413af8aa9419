"""Dense connectivity (Huang et al., Densely Connected Convolutional Networks, CVPR 2017).

Inside a :class:`DenseBlock` layer ``l`` sees the concatenation ``[x_0, x_1, ..., x_{l-1}]`` of
the block input and every earlier layer's output, and adds ``growth_rate`` (k) new channels,
so a block of L layers maps ``C`` channels to ``C + L * k``. A :class:`Transition` between
blocks compresses the channels (DenseNet-C, factor theta) and halves the resolution.

Names follow torchvision's ``_DenseLayer`` / ``_DenseBlock`` / ``_Transition``
(``denselayer1.norm1``, ``transition1.conv``, ...) so its checkpoints load unchanged::

    block = DenseBlock(num_layers=6, in_chans=64, growth_rate=32, bn_size=4)  # 64 -> 256
    trans = Transition(block.out_chans, block.out_chans // 2)                  # 256 -> 128, H/2
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm


class DenseLayer(nn.Module):
    """Pre-activation ``BN-ReLU-Conv1x1-BN-ReLU-Conv3x3`` producing ``growth_rate`` channels.

    The 1x1 "bottleneck" (the B in DenseNet-BC) narrows the concatenated input to
    ``bn_size * growth_rate`` channels first; ``bn_size=0`` gives the plain DenseNet layer
    ``BN-ReLU-Conv3x3`` (then only ``norm1`` / ``relu1`` / ``conv1`` exist).
    """

    def __init__(self, in_chans: int, growth_rate: int, bn_size: int = 4, drop_rate: float = 0.0,
                 act: str = "relu", norm: str = "batch") -> None:
        super().__init__()
        if growth_rate < 1 or bn_size < 0 or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"DenseLayer needs growth_rate >= 1, bn_size >= 0 and drop_rate in "
                             f"[0, 1), got {growth_rate}, {bn_size}, {drop_rate}")
        self.drop_rate = drop_rate
        self.norm1 = create_norm(norm, in_chans)
        # In place is safe: the input is a fresh concatenation or a norm's output.
        self.relu1 = create_act(act, inplace=True)
        if bn_size > 0:
            width = bn_size * growth_rate
            self.conv1 = nn.Conv2d(in_chans, width, 1, bias=False)
            self.norm2 = create_norm(norm, width)
            self.relu2 = create_act(act, inplace=True)
            self.conv2 = nn.Conv2d(width, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chans, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        if hasattr(self, "conv2"):
            out = self.conv2(self.relu2(self.norm2(out)))  # (B, bn_size*k, H, W) -> (B, k, H, W)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` :class:`DenseLayer` s, each fed the concatenation of all earlier outputs.

    Output channel order is ``[input, layer1, layer2, ...]`` (torchvision's order), so
    ``out[:, :in_chans]`` is the block input unchanged.
    """

    def __init__(self, num_layers: int, in_chans: int, growth_rate: int, bn_size: int = 4,
                 drop_rate: float = 0.0, act: str = "relu", norm: str = "batch") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"DenseBlock needs num_layers >= 1, got {num_layers}")
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_chans + i * growth_rate, growth_rate, bn_size,
                                       drop_rate, act, norm))
        self.out_chans = in_chans + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)  # (B, C, H, W) -> (B, C + L*k, H, W)


class Transition(nn.Sequential):
    """``BN-ReLU-Conv1x1-AvgPool2x2`` between dense blocks: ``in_chans -> out_chans``, H/2, W/2.

    DenseNet-C chooses ``out_chans = floor(theta * in_chans)`` with compression theta = 0.5.
    """

    def __init__(self, in_chans: int, out_chans: int, act: str = "relu",
                 norm: str = "batch") -> None:
        super().__init__()
        self.norm = create_norm(norm, in_chans)
        # Not in place: with norm="none" the input is the block output, which callers may keep.
        self.relu = create_act(act)
        self.conv = nn.Conv2d(in_chans, out_chans, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)
