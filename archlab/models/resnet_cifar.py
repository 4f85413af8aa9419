"""The ResNet paper's CIFAR-10 networks and their plain twins (He et al. 2016, Sec. 4.2).

A 3x3 conv with 16 filters, then three stages of ``n`` BasicBlocks (2n 3x3 convs each) on
32x32, 16x16 and 8x8 maps with 16, 32 and 64 filters, global average pooling and one Linear:
``6n + 2`` weighted layers. resnet20/32/44/56/110 are n = 3/5/7/9/18 (0.27M ... 1.7M params).
The ``plain*`` twins have the same layers without shortcuts, the paper's Fig. 6 comparison.

Shortcuts when the shape changes (first block of stages 2 and 3):

* ``shortcut="A"`` (the paper's CIFAR choice, parameter-free): identity subsampled with stride
  2 and zero-padded with extra channels, so plain and residual twins have equal parameters;
* ``shortcut="B"``: 1x1 conv projection (stride 2) + norm, at ``downsample.0/1``.

Usage::

    model = create_model("resnet20")                                  # CIFAR-10, 3x32x32
    model = create_model("resnet56", num_classes=10, in_chans=1, shortcut="B")   # 1x28x28 ok

``zero_init_last`` zeroes the scale of every block's last norm, so at init each block is
``act(shortcut(x))``: the identity on post-activation (non-negative) inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

PAPER = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016 (Sec. 4.2)"
SHORTCUTS = ("A", "B")


class ShortcutA(nn.Module):
    """Option A: ``x[:, :, ::s, ::s]`` with ``out_ch - in_ch`` zero channels appended.

    (B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s)); no parameters.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        if out_ch < in_ch:
            raise ValueError(f"option A can only add channels, got {in_ch} -> {out_ch}")
        self.extra = out_ch - in_ch
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra))  # pads dim 1 (channels) at the end

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra}, stride={self.stride}"


class CifarBlock(nn.Module):
    """conv3x3-norm-act-conv3x3-norm (+ shortcut) -act; ``shortcut=None`` is the plain block."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: str | None,
                 act: str = "relu", norm: str = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, bias=False)
        self.bn1 = create_norm(norm, out_ch)
        self.act1 = create_act(act)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1, bias=False)
        self.bn2 = create_norm(norm, out_ch)
        self.residual = shortcut is not None
        self.downsample: nn.Module = nn.Identity()
        if self.residual and (stride != 1 or in_ch != out_ch):
            self.downsample = (ShortcutA(in_ch, out_ch, stride) if shortcut == "A" else
                               nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                             create_norm(norm, out_ch)))
        self.act2 = create_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.residual:
            out = out + self.downsample(x)
        return self.act2(out)


class ResNetCifar(Classifier):
    """``depth = 6n + 2``; ``residual=False`` gives the plain net of the same depth.

    ``img_size`` only sets ``default_cfg.input_size`` (28 for MNIST-like data): the net ends in
    global average pooling, so any input of at least 8x8 runs.
    """

    def __init__(self, depth: int = 20, num_classes: int = 10, in_chans: int = 3,
                 residual: bool = True, shortcut: str = "A",
                 widths: tuple[int, int, int] = (16, 32, 64),
                 act: str = "relu", norm: str = "batch", zero_init_last: bool = False,
                 img_size: int = 32) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...), "
                             f"got {depth}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}; choose 'A' (zero-pad identity) "
                             f"or 'B' (1x1 projection)")
        if zero_init_last and not residual:
            raise ValueError("zero_init_last needs shortcuts: a plain net whose blocks output "
                             "zero at init would pass no signal")
        n = (depth - 2) // 6
        self.depth = depth
        self.num_classes = num_classes
        self.num_features = widths[-1]

        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, padding=1, bias=False)
        self.bn1 = create_norm(norm, widths[0])
        self.act = create_act(act)
        in_ch = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1  # 32 -> 16 -> 8
                blocks.append(CifarBlock(in_ch, width, stride, shortcut if residual else None,
                                         act=act, norm=norm))
                in_ch = width
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(self.num_features, num_classes)
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, img_size, img_size), num_classes=num_classes, classifier="fc",
            first_conv="conv1", mean=(0.5,) * in_chans, std=(0.5,) * in_chans,
            family="resnet_cifar", paper=PAPER)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He init, as the paper uses (its ref. [13])
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, CifarBlock):
                    weight = getattr(m.bn2, "weight", None)
                    nn.init.zeros_(weight if isinstance(weight, torch.Tensor) else m.conv2.weight)

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        return (self.layer1, self.layer2, self.layer3)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))  # (B, C, 32, 32) -> (B, 16, 32, 32)
        for stage in self.stages:
            x = stage(x)
        return x  # (B, 64, 8, 8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 64, 8, 8) -> (B, 64)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the three stages (32x32, 16x16, 8x8 for a 32x32 input)."""
        outs, x = [], self.act(self.bn1(self.conv1(x)))
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def _build(depth: int, residual: bool, kwargs: dict) -> ResNetCifar:
    fixed = sorted({"depth", "residual"} & set(kwargs))
    if fixed:
        raise TypeError(f"{fixed} fixed by the variant; build ResNetCifar(...) directly instead")
    return ResNetCifar(depth=depth, residual=residual, **kwargs)


@register_model("resnet20", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def resnet20(**kwargs) -> ResNetCifar:
    """n = 3, 0.27M params (paper: 8.75% CIFAR-10 error)."""
    return _build(20, True, kwargs)


@register_model("resnet32", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def resnet32(**kwargs) -> ResNetCifar:
    """n = 5, 0.46M params (paper: 7.51%)."""
    return _build(32, True, kwargs)


@register_model("resnet44", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def resnet44(**kwargs) -> ResNetCifar:
    """n = 7, 0.66M params (paper: 7.17%)."""
    return _build(44, True, kwargs)


@register_model("resnet56", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def resnet56(**kwargs) -> ResNetCifar:
    """n = 9, 0.85M params (paper: 6.97%)."""
    return _build(56, True, kwargs)


@register_model("resnet110", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def resnet110(**kwargs) -> ResNetCifar:
    """n = 18, 1.7M params (paper: 6.43%, best of 5 runs; 6.61 ± 0.16 mean)."""
    return _build(110, True, kwargs)


@register_model("plain20", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def plain20(**kwargs) -> ResNetCifar:
    """resnet20 without shortcuts."""
    return _build(20, False, kwargs)


@register_model("plain32", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def plain32(**kwargs) -> ResNetCifar:
    """resnet32 without shortcuts."""
    return _build(32, False, kwargs)


@register_model("plain44", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def plain44(**kwargs) -> ResNetCifar:
    """resnet44 without shortcuts."""
    return _build(44, False, kwargs)


@register_model("plain56", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def plain56(**kwargs) -> ResNetCifar:
    """resnet56 without shortcuts (the paper's Fig. 6: deeper plain nets train worse)."""
    return _build(56, False, kwargs)


@register_model("plain110", family="resnet_cifar", paper=PAPER, model_cls=ResNetCifar)
def plain110(**kwargs) -> ResNetCifar:
    """resnet110 without shortcuts."""
    return _build(110, False, kwargs)
