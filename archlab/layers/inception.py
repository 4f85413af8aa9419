"""The Inception module of GoogLeNet (Szegedy et al., Going Deeper with Convolutions, CVPR 2015)
and the conv-BN-ReLU unit of the Inception family.

An :class:`Inception` module runs four branches on the same input and concatenates them along
channels: ``1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | 3x3 max-pool -> 1x1``; the 1x1 "reduce" convs
keep the larger kernels cheap. Names (``branch1``, ``branch2.0``, ``branch4.1``, ``conv`` /
``bn``) follow torchvision so its checkpoints load unchanged::

    block = Inception(192, 64, 96, 128, 16, 32, 32)  # inception (3a): 192 -> 256 channels
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm

# The Inception checkpoints were trained in TensorFlow, whose batch norm epsilon is 1e-3.
INCEPTION_BN_EPS = 1e-3


class BasicConv2d(nn.Module):
    """Conv (no bias) -> norm -> activation; ``norm="batch"`` is BatchNorm with eps 1e-3."""

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int | tuple[int, int],
                 stride: int = 1, padding: int | tuple[int, int] = 0, norm: str = "batch",
                 act: str = "relu") -> None:
        super().__init__()
        # A norm's shift makes the conv bias redundant; keep it only without a norm.
        self.conv = nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=padding,
                              bias=norm == "none")
        self.bn = (nn.BatchNorm2d(out_chans, eps=INCEPTION_BN_EPS) if norm == "batch"
                   else create_norm(norm, out_chans))
        self.act = create_act(act, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Inception(nn.Module):
    """GoogLeNet's module; output channels ``ch1x1 + ch3x3 + ch5x5 + pool_proj``.

    Arguments are the columns of Table 1 of the paper. ``branch3_kernel`` is the kernel of the
    "5x5" branch: the paper uses 5, torchvision's GoogLeNet (and its ImageNet checkpoint) uses 3,
    which is the default here for checkpoint compatibility.
    """

    def __init__(self, in_chans: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, branch3_kernel: int = 3, norm: str = "batch",
                 act: str = "relu") -> None:
        super().__init__()
        if branch3_kernel % 2 != 1:
            raise ValueError(f"branch3_kernel must be odd to keep the spatial size, "
                             f"got {branch3_kernel}")
        self.branch1 = BasicConv2d(in_chans, ch1x1, 1, norm=norm, act=act)
        self.branch2 = nn.Sequential(
            BasicConv2d(in_chans, ch3x3red, 1, norm=norm, act=act),
            BasicConv2d(ch3x3red, ch3x3, 3, padding=1, norm=norm, act=act))
        self.branch3 = nn.Sequential(
            BasicConv2d(in_chans, ch5x5red, 1, norm=norm, act=act),
            BasicConv2d(ch5x5red, ch5x5, branch3_kernel, padding=branch3_kernel // 2,
                        norm=norm, act=act))
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
            BasicConv2d(in_chans, pool_proj, 1, norm=norm, act=act))
        self.out_chans = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, 1)  # (B, C, H, W) -> (B, out_chans, H, W)


def transform_input(x: torch.Tensor) -> torch.Tensor:
    """Map ImageNet-normalized RGB to the ``(x - 0.5) / 0.5`` scaling the TensorFlow-trained
    GoogLeNet / Inception-v3 checkpoints expect (torchvision's ``transform_input=True``)."""
    from archlab.layers.normalization_constants import IMAGENET_MEAN as mean, IMAGENET_STD as std

    channels = [x[:, i:i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)]
    return torch.cat(channels, 1)
