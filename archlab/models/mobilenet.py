"""MobileNet v1, v2 and v3 (small / large): depthwise-separable CNNs for mobile budgets.

* v1 (Howard et al. 2017): a stack of depthwise separable convs (Table 1).
* v2 (Sandler et al. 2018): inverted residuals with linear bottlenecks, table rows (t, c, n, s)
  = (expansion, channels, repeats, first stride) (Table 2).
* v3 (Howard et al. 2019): NAS-found MBConv blocks with squeeze-and-excitation (hard-sigmoid
  gate, squeeze width ``make_divisible(expanded // 4, 8)``), h-swish in the deeper half, and a
  cheaper last stage (Tables 1-2).

Every variant takes a width multiplier α that scales all channel counts, rounded with
``make_divisible(c * α, 8)``. v2 and v3 reproduce torchvision's module layout exactly
(``features.N...``, ``classifier.1`` / ``classifier.3``), so its checkpoints load with
``strict=True``. ``stem="small"`` adapts to 32x32 inputs by removing the two first
downsamplings (stem stride 1, first stride-2 block at stride 1), as CIFAR ports commonly do.

    model = create_model("mobilenet_v2", num_classes=10, in_chans=1, stem="small")
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from archlab.layers.conv_norm_act import ConvNormAct, norm_layer_by_name
from archlab.layers.depthwise_separable import DepthwiseSeparableConv
from archlab.layers.inverted_residual import InvertedResidual, MBConv, make_divisible
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER_V1 = ("Howard et al., MobileNets: Efficient Convolutional Neural Networks for Mobile "
            "Vision Applications, arXiv 2017")
PAPER_V2 = "Sandler et al., MobileNetV2: Inverted Residuals and Linear Bottlenecks, CVPR 2018"
PAPER_V3 = "Howard et al., Searching for MobileNetV3, ICCV 2019"

STEMS = ("imagenet", "small")

# v1, Table 1: (out_channels, stride) of each depthwise separable layer after the 32-ch stem.
# The paper lists stride 2 for the last layer, but at 7x7 it must be 1 (reference code does so).
V1_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

# v2, Table 2: (t expansion, c out_channels, n repeats, s stride of the first repeat).
V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
              (6, 160, 3, 2), (6, 320, 1, 1)]


class V3Block(NamedTuple):
    """One row of MobileNetV3 Tables 1-2 (channels before the width multiplier)."""
    kernel: int
    expanded: int
    out: int
    se: bool
    act: str
    stride: int


_RE, _HS = "relu", "hard_swish"
V3_SMALL = [V3Block(3, 16, 16, True, _RE, 2), V3Block(3, 72, 24, False, _RE, 2),
            V3Block(3, 88, 24, False, _RE, 1), V3Block(5, 96, 40, True, _HS, 2),
            V3Block(5, 240, 40, True, _HS, 1), V3Block(5, 240, 40, True, _HS, 1),
            V3Block(5, 120, 48, True, _HS, 1), V3Block(5, 144, 48, True, _HS, 1),
            V3Block(5, 288, 96, True, _HS, 2), V3Block(5, 576, 96, True, _HS, 1),
            V3Block(5, 576, 96, True, _HS, 1)]
V3_LARGE = [V3Block(3, 16, 16, False, _RE, 1), V3Block(3, 64, 24, False, _RE, 2),
            V3Block(3, 72, 24, False, _RE, 1), V3Block(5, 72, 40, True, _RE, 2),
            V3Block(5, 120, 40, True, _RE, 1), V3Block(5, 120, 40, True, _RE, 1),
            V3Block(3, 240, 80, False, _HS, 2), V3Block(3, 200, 80, False, _HS, 1),
            V3Block(3, 184, 80, False, _HS, 1), V3Block(3, 184, 80, False, _HS, 1),
            V3Block(3, 480, 112, True, _HS, 1), V3Block(3, 672, 112, True, _HS, 1),
            V3Block(5, 672, 160, True, _HS, 2), V3Block(5, 960, 160, True, _HS, 1),
            V3Block(5, 960, 160, True, _HS, 1)]
V3_VARIANTS = {"small": (V3_SMALL, 1024), "large": (V3_LARGE, 1280)}  # table, hidden head width


def _check_common(stem: str, width_mult: float) -> None:
    if stem not in STEMS:
        raise ValueError(f"unknown stem '{stem}'; choices: {', '.join(STEMS)}")
    if width_mult <= 0:
        raise ValueError(f"width_mult must be > 0, got {width_mult}")


def _small_stem_strides(strides: list[int], stem: str) -> list[int]:
    """For ``stem="small"``, the first stride-2 block runs at stride 1."""
    if stem == "small" and 2 in strides:
        strides = list(strides)
        strides[strides.index(2)] = 1
    return strides


class _MobileNet(Classifier):
    """Shared contract for the three versions: ``features`` -> ``avgpool`` -> ``classifier``."""

    features: nn.Sequential
    classifier: nn.Sequential
    _classifier_index: int

    def _finish(self, in_chans: int, stem: str, num_classes: int, paper: str) -> None:
        size = 32 if stem == "small" else 224
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, size, size), num_classes=num_classes,
            classifier=f"classifier.{self._classifier_index}", first_conv="features.0.0",
            **imagenet_stats(in_chans), family="mobilenet", paper=paper)
        # A stage ends where the next module downsamples (or at the end): one map per scale.
        strides = [_stride(m) for m in self.features]
        self._stage_ends = [i for i in range(len(self.features))
                            if i == len(self.features) - 1 or strides[i + 1] > 1]
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last feature map at each resolution (stem side first)."""
        outs = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._stage_ends:
                outs.append(x)
        return outs

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(x).flatten(1)  # (B, C, H, W) -> (B, C)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[self._classifier_index] = linear_or_identity(self.num_features,
                                                                     num_classes)


class MobileNetV1(_MobileNet):
    _classifier_index = 1

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 width_mult: float = 1.0, drop_rate: float = 0.0, act: str = "relu",
                 norm: str = "batch") -> None:
        super().__init__()
        _check_common(stem, width_mult)
        norm_layer = norm_layer_by_name(norm)
        channels = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, 1 if stem == "small" else 2,
                                               norm_layer=norm_layer, act=act)]
        strides = _small_stem_strides([s for _, s in V1_LAYERS], stem)
        for (out, _), stride in zip(V1_LAYERS, strides):
            out = make_divisible(out * width_mult)
            layers.append(DepthwiseSeparableConv(channels, out, stride, norm_layer=norm_layer,
                                                 act=act))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes, self.num_features = num_classes, channels
        self.classifier = nn.Sequential(nn.Dropout(drop_rate),
                                        linear_or_identity(channels, num_classes))
        self._finish(in_chans, stem, num_classes, PAPER_V1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self._pool(x)
        return x if pre_logits else self.classifier(x)


class MobileNetV2(_MobileNet):
    _classifier_index = 1

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 width_mult: float = 1.0, drop_rate: float = 0.2, act: str = "relu6",
                 norm: str = "batch", drop_path_rate: float = 0.0) -> None:
        super().__init__()
        _check_common(stem, width_mult)
        norm_layer = norm_layer_by_name(norm)
        channels = make_divisible(32 * width_mult)
        last_channels = make_divisible(1280 * max(1.0, width_mult))  # the head never shrinks
        layers: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, 1 if stem == "small" else 2,
                                               norm_layer=norm_layer, act=act)]
        strides = _small_stem_strides([s if i == 0 else 1 for _, _, n, s in V2_SETTING
                                       for i in range(n)], stem)
        rows = [(t, c) for t, c, n, _ in V2_SETTING for _ in range(n)]
        for i, ((t, c), stride) in enumerate(zip(rows, strides)):
            out = make_divisible(c * width_mult)
            rate = drop_path_rate * i / len(rows)
            layers.append(InvertedResidual(channels, out, stride, t, norm_layer, act, rate))
            channels = out
        layers.append(ConvNormAct(channels, last_channels, 1, norm_layer=norm_layer, act=act))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes, self.num_features = num_classes, last_channels
        self.classifier = nn.Sequential(nn.Dropout(drop_rate),
                                        linear_or_identity(last_channels, num_classes))
        self._finish(in_chans, stem, num_classes, PAPER_V2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self._pool(x)
        return x if pre_logits else self.classifier(x)


class MobileNetV3(_MobileNet):
    """``variant="small" | "large"``; BN uses eps 1e-3 / momentum 0.01 as the TF-trained
    reference (and torchvision) does."""

    _classifier_index = 3

    def __init__(self, variant: str = "large", num_classes: int = 1000, in_chans: int = 3,
                 stem: str = "imagenet", width_mult: float = 1.0, drop_rate: float = 0.2,
                 norm: str = "batch", drop_path_rate: float = 0.0) -> None:
        super().__init__()
        _check_common(stem, width_mult)
        if variant not in V3_VARIANTS:
            raise ValueError(f"unknown MobileNetV3 variant '{variant}'; choices: "
                             f"{', '.join(V3_VARIANTS)}")
        table, head_width = V3_VARIANTS[variant]
        norm_layer = norm_layer_by_name(norm, eps=1e-3, momentum=0.01)
        channels = make_divisible(16 * width_mult)
        layers: list[nn.Module] = [ConvNormAct(in_chans, channels, 3, 1 if stem == "small" else 2,
                                               norm_layer=norm_layer, act=_HS)]
        strides = _small_stem_strides([b.stride for b in table], stem)
        for i, (b, stride) in enumerate(zip(table, strides)):
            expanded = make_divisible(b.expanded * width_mult)
            out = make_divisible(b.out * width_mult)
            squeeze = make_divisible(expanded // 4) if b.se else 0
            layers.append(MBConv(channels, out, b.kernel, stride, expanded, squeeze, act=b.act,
                                 se_act="relu", se_gate="hard_sigmoid", norm_layer=norm_layer,
                                 drop_path_rate=drop_path_rate * i / len(table)))
            channels = out
        last_conv = 6 * channels
        layers.append(ConvNormAct(channels, last_conv, 1, norm_layer=norm_layer, act=_HS))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        head_width = make_divisible(head_width * width_mult)
        self.num_classes, self.num_features = num_classes, head_width
        # The last stage's 1x1 conv runs after pooling as a Linear (Sec. 5.3, "efficient last
        # stage"); its output is the pre-logits embedding.
        self.classifier = nn.Sequential(nn.Linear(last_conv, head_width),
                                        nn.Hardswish(inplace=True),
                                        nn.Dropout(drop_rate, inplace=True),
                                        linear_or_identity(head_width, num_classes))
        self._finish(in_chans, stem, num_classes, PAPER_V3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.classifier[1](self.classifier[0](self._pool(x)))  # (B, C) -> (B, head_width)
        return x if pre_logits else self.classifier[3](self.classifier[2](x))


def _stride(module: nn.Module) -> int:
    return module[0].stride[0] if isinstance(module, ConvNormAct) else module.stride


def _init_weights(model: nn.Module) -> None:
    # torchvision's MobileNet init: He (fan-out) convs, unit BN, small-normal classifier.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


@register_model("mobilenet_v1", family="mobilenet", paper=PAPER_V1)
def mobilenet_v1(num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 width_mult: float = 1.0, drop_rate: float = 0.0, act: str = "relu",
                 norm: str = "batch") -> MobileNetV1:
    """MobileNet v1 1.0-224 (4.2M params); ``width_mult`` is the paper's α."""
    return MobileNetV1(num_classes, in_chans, stem, width_mult, drop_rate, act, norm)


@register_model("mobilenet_v2", family="mobilenet", paper=PAPER_V2)
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 width_mult: float = 1.0, drop_rate: float = 0.2, act: str = "relu6",
                 norm: str = "batch", drop_path_rate: float = 0.0) -> MobileNetV2:
    """MobileNetV2 1.0 (3.5M params), torchvision-compatible."""
    return MobileNetV2(num_classes, in_chans, stem, width_mult, drop_rate, act, norm,
                       drop_path_rate)


@register_model("mobilenet_v3_small", family="mobilenet", paper=PAPER_V3)
def mobilenet_v3_small(num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                       width_mult: float = 1.0, drop_rate: float = 0.2, norm: str = "batch",
                       drop_path_rate: float = 0.0) -> MobileNetV3:
    """MobileNetV3-Small (2.5M params), torchvision-compatible."""
    return MobileNetV3("small", num_classes, in_chans, stem, width_mult, drop_rate, norm,
                       drop_path_rate)


@register_model("mobilenet_v3_large", family="mobilenet", paper=PAPER_V3)
def mobilenet_v3_large(num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                       width_mult: float = 1.0, drop_rate: float = 0.2, norm: str = "batch",
                       drop_path_rate: float = 0.0) -> MobileNetV3:
    """MobileNetV3-Large (5.5M params), torchvision-compatible."""
    return MobileNetV3("large", num_classes, in_chans, stem, width_mult, drop_rate, norm,
                       drop_path_rate)
