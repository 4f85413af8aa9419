"""EfficientNet-B0 ... B7 (Tan & Le, ICML 2019): one B0 table, scaled in depth, width and
resolution by compound scaling.

Compound scaling (Sec. 3.3, Eq. 3) grows all three dimensions together with one coefficient φ:
depth d = α^φ, width w = β^φ, resolution r = γ^φ, with α·β²·γ² ≈ 2 so FLOPs grow ≈ 2^φ. The
grid search on B0 gave α = 1.2, β = 1.1, γ = 1.15; :func:`compound_scale` returns these raw
multipliers. The released B1-B7 (used by the reference TF code, timm and torchvision, and
below) are rounded, hand-adjusted values rather than exact powers of one φ. Solving each axis
for φ shows the relation (224 px base resolution):

    variant  width  depth  res   φ from depth  φ from width  φ from resolution
    b0       1.0    1.0    224   0             0             0
    b1       1.0    1.1    240   0.52          0             0.49
    b2       1.1    1.2    260   1.00          1.00          1.07
    b3       1.2    1.4    300   1.85          1.91          2.09
    b4       1.4    1.8    380   3.22          3.53          3.78
    b5       1.6    2.2    456   4.32          4.93          5.09
    b6       1.8    2.6    528   5.24          6.17          6.14
    b7       2.0    3.1    600   6.21          7.27          7.05

so B(k) sits near φ = k - 1 (k ≥ 2), with larger variants given extra width and resolution.
Channel counts are ``make_divisible(c * width, 8)``, repeats ``ceil(n * depth)``.

Layout and computation match torchvision (``features.N.M.block.K``, ``features.8`` last conv,
``classifier.1`` linear): MBConv with SE (squeeze = block input channels // 4, SiLU), stochastic
depth rising linearly with the block index to ``drop_path_rate`` (torchvision's
``stochastic_depth_prob``, 0.2) and BatchNorm at PyTorch defaults for B0-B4 but eps 1e-3 /
momentum 0.01 for B5-B7, as torchvision builds them. ``stem="small"`` (32x32 inputs) runs the
stem and the first stride-2 stage at stride 1.

    model = create_model("efficientnet_b0", num_classes=10, stem="small")
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from archlab.layers.conv_norm_act import ConvNormAct, norm_layer_by_name
from archlab.layers.inverted_residual import MBConv, make_divisible
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = ("Tan & Le, EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks, "
         "ICML 2019")

# Compound-scaling coefficients from the grid search on B0 (Sec. 3.3, step 1).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
STEMS = ("imagenet", "small")


def compound_scale(phi: float) -> tuple[float, float, float]:
    """The paper's raw (depth, width, resolution) multipliers α^φ, β^φ, γ^φ (Eq. 3)."""
    return ALPHA ** phi, BETA ** phi, GAMMA ** phi


class Stage(NamedTuple):
    """One row of the B0 table (Table 1): MBConv<expand_ratio> k<kernel> repeated."""
    expand_ratio: int
    kernel: int
    stride: int
    in_channels: int
    out_channels: int
    repeats: int


B0_STAGES = [Stage(1, 3, 1, 32, 16, 1), Stage(6, 3, 2, 16, 24, 2), Stage(6, 5, 2, 24, 40, 2),
             Stage(6, 3, 2, 40, 80, 3), Stage(6, 5, 1, 80, 112, 3), Stage(6, 5, 2, 112, 192, 4),
             Stage(6, 3, 1, 192, 320, 1)]


class Variant(NamedTuple):
    width: float
    depth: float
    resolution: int
    drop_rate: float  # dropout before the classifier


VARIANTS = {
    "b0": Variant(1.0, 1.0, 224, 0.2), "b1": Variant(1.0, 1.1, 240, 0.2),
    "b2": Variant(1.1, 1.2, 260, 0.3), "b3": Variant(1.2, 1.4, 300, 0.3),
    "b4": Variant(1.4, 1.8, 380, 0.4), "b5": Variant(1.6, 2.2, 456, 0.4),
    "b6": Variant(1.8, 2.6, 528, 0.5), "b7": Variant(2.0, 3.1, 600, 0.5),
}
# B5-B7 were ported from TF checkpoints trained with TF's BN defaults.
TF_BN_VARIANTS = ("b5", "b6", "b7")
# B3+ exceed ~3.6 GFLOPs at native resolution: built, never run, in unit tests.
HEAVY_VARIANTS = ("b3", "b4", "b5", "b6", "b7")


def scale_stages(width: float, depth: float) -> list[Stage]:
    """The B0 table with channels and repeats scaled (torchvision's rounding rules)."""
    return [s._replace(in_channels=make_divisible(s.in_channels * width),
                       out_channels=make_divisible(s.out_channels * width),
                       repeats=int(math.ceil(s.repeats * depth))) for s in B0_STAGES]


class EfficientNet(Classifier):
    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000,
                 in_chans: int = 3, stem: str = "imagenet", drop_rate: float = 0.2,
                 drop_path_rate: float = 0.2, act: str = "silu", norm: str = "batch",
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1, resolution: int = 224) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem '{stem}'; choices: {', '.join(STEMS)}")
        if width <= 0 or depth <= 0:
            raise ValueError(f"width and depth multipliers must be > 0, got {width}, {depth}")
        norm_layer = norm_layer_by_name(norm, eps=bn_eps, momentum=bn_momentum)
        stages = scale_stages(width, depth)
        if stem == "small":
            first = next(i for i, s in enumerate(stages) if s.stride == 2)
            stages[first] = stages[first]._replace(stride=1)
        layers: list[nn.Module] = [ConvNormAct(in_chans, stages[0].in_channels, 3,
                                               1 if stem == "small" else 2,
                                               norm_layer=norm_layer, act=act)]
        total, block_id = sum(s.repeats for s in stages), 0
        for s in stages:
            blocks = []
            for j in range(s.repeats):
                in_ch = s.in_channels if j == 0 else s.out_channels
                blocks.append(MBConv(
                    in_ch, s.out_channels, s.kernel, s.stride if j == 0 else 1,
                    expanded_channels=make_divisible(in_ch * s.expand_ratio),
                    squeeze_channels=max(1, in_ch // 4), act=act, se_act=act,
                    se_gate="sigmoid", norm_layer=norm_layer,
                    drop_path_rate=drop_path_rate * block_id / total))  # linear in depth
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        last_channels = 4 * stages[-1].out_channels
        layers.append(ConvNormAct(stages[-1].out_channels, last_channels, 1,
                                  norm_layer=norm_layer, act=act))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_classes, self.num_features = num_classes, last_channels
        self.classifier = nn.Sequential(nn.Dropout(drop_rate, inplace=True),
                                        linear_or_identity(last_channels, num_classes))
        size = 32 if stem == "small" else resolution
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, size, size), num_classes=num_classes,
            classifier="classifier.1", first_conv="features.0.0",
            **imagenet_stats(in_chans), family="efficientnet", paper=PAPER)
        self._init_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C, H, W) -> (B, C)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[1] = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the stem, the seven MBConv stages and the last 1x1 conv."""
        outs = []
        for stage in self.features:
            x = stage(x)
            outs.append(x)
        return outs

    def _init_weights(self) -> None:
        # torchvision's init: He fan-out convs, unit BN, uniform(±1/sqrt(out)) classifier.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)


def _register(name: str, v: Variant) -> None:
    tf_bn = name in TF_BN_VARIANTS

    def builder(num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                drop_rate: float = v.drop_rate, drop_path_rate: float = 0.2, act: str = "silu",
                norm: str = "batch") -> EfficientNet:
        return EfficientNet(v.width, v.depth, num_classes, in_chans, stem, drop_rate,
                            drop_path_rate, act, norm, bn_eps=1e-3 if tf_bn else 1e-5,
                            bn_momentum=0.01 if tf_bn else 0.1, resolution=v.resolution)

    builder.__name__ = f"efficientnet_{name}"
    builder.__doc__ = (f"EfficientNet-{name.upper()}: width x{v.width}, depth x{v.depth}, "
                       f"{v.resolution}px; torchvision-compatible.")
    register_model(f"efficientnet_{name}", family="efficientnet", paper=PAPER,
                   heavy=name in HEAVY_VARIANTS)(builder)


for _name, _variant in VARIANTS.items():
    _register(_name, _variant)
