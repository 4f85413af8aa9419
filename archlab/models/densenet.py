"""DenseNet (Huang et al., Densely Connected Convolutional Networks, CVPR 2017).

Variants are rows of :data:`DENSENET_SPECS` (growth rate k, layers per dense block, stem width,
bottleneck width factor ``bn_size``, transition compression theta):

* ``densenet121/161/169/201``: the ImageNet DenseNet-BC models, with torchvision's module names
  and computation (``features.conv0 ... features.denseblockN.denselayerM ... features.norm5``,
  ``classifier``), so torchvision checkpoints load with ``strict=True``;
* ``densenet_bc_100_k12`` / ``densenet_bc_40_k12``: the paper's CIFAR DenseNet-BC (3 dense blocks
  of (depth - 4) / 6 bottleneck layers, 3x3 stem conv with 2k channels, compression 0.5).

``stem="small"`` (28x28 / 32x32 inputs) replaces the ``7x7/2 conv - BN - ReLU - 3x3/2 max-pool``
stem by a single 3x3 stride-1 conv, as the paper's CIFAR models do; since every dense layer
starts with BN-ReLU, no norm/activation is needed after it. Usage::

    model = create_model("densenet_bc_100_k12", num_classes=10)
    model = create_model("densenet121", num_classes=10, in_chans=1, stem="small", drop_rate=0.2)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.dense_block import DenseBlock, Transition
from archlab.layers.norms import create_norm
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = "Huang et al., Densely Connected Convolutional Networks, CVPR 2017"


@dataclass(frozen=True)
class DenseNetSpec:
    growth_rate: int
    block_config: tuple[int, ...]  # dense layers per block
    num_init_features: int  # stem output channels
    bn_size: int = 4  # bottleneck width = bn_size * growth_rate (0: no bottleneck)
    compression: float = 0.5  # theta: a transition keeps floor(theta * C) channels
    stem: str = "imagenet"
    num_classes: int = 1000


DENSENET_SPECS: dict[str, DenseNetSpec] = {
    # Table 1 of the paper (ImageNet, k = 32 / 48).
    "densenet121": DenseNetSpec(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetSpec(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetSpec(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetSpec(32, (6, 12, 48, 32), 64),
    # CIFAR DenseNet-BC: depth L = 6 * layers_per_block + 4, stem width 2k.
    "densenet_bc_100_k12": DenseNetSpec(12, (16, 16, 16), 24, stem="small", num_classes=10),
    "densenet_bc_40_k12": DenseNetSpec(12, (6, 6, 6), 24, stem="small", num_classes=10),
}


class DenseNet(Classifier):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, growth_rate: int = 32,
                 block_config: tuple[int, ...] = (6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, compression: float = 0.5, stem: str = "imagenet",
                 drop_rate: float = 0.0, act: str = "relu", norm: str = "batch") -> None:
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem '{stem}'; choose 'imagenet' or 'small'")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if not block_config:
            raise ValueError("block_config needs at least one dense block")
        self.num_classes = num_classes
        if stem == "imagenet":
            stem_layers = [
                ("conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3,
                                    bias=False)),  # (B, C, 224, 224) -> (B, F, 112, 112)
                ("norm0", create_norm(norm, num_init_features)),
                ("relu0", create_act(act, inplace=True)),
                ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),  # -> (B, F, 56, 56)
            ]
        else:
            stem_layers = [("conv0", nn.Conv2d(in_chans, num_init_features, 3, padding=1,
                                               bias=False))]
        self.features = nn.Sequential(OrderedDict(stem_layers))
        channels = num_init_features
        for i, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, channels, growth_rate, bn_size, drop_rate, act, norm)
            self.features.add_module(f"denseblock{i + 1}", block)
            channels = block.out_chans
            if i != len(block_config) - 1:
                out_chans = int(math.floor(compression * channels))
                self.features.add_module(f"transition{i + 1}",
                                         Transition(channels, out_chans, act, norm))
                channels = out_chans
        self.features.add_module("norm5", create_norm(norm, channels))
        self.act = create_act(act)  # torchvision's functional ReLU after norm5 (no weights)
        self.num_features = channels
        self.classifier = linear_or_identity(channels, num_classes)

        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32),
            num_classes=num_classes, classifier="classifier", first_conv="features.conv0",
            **imagenet_stats(in_chans),
            family="densenet", paper=PAPER)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.features(x))  # (B, C, H, W) -> (B, num_features, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # -> (B, num_features)
        return x if pre_logits else self.classifier(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every dense block (the last one after ``norm5`` and the activation)."""
        outs = []
        for module in self.features.children():
            x = module(x)
            if isinstance(module, DenseBlock):
                outs.append(x)
        outs[-1] = self.act(x)
        return outs


def _create(name: str, **kwargs) -> DenseNet:
    spec = DENSENET_SPECS[name]
    defaults = dict(growth_rate=spec.growth_rate, block_config=spec.block_config,
                    num_init_features=spec.num_init_features, bn_size=spec.bn_size,
                    compression=spec.compression, stem=spec.stem, num_classes=spec.num_classes)
    return DenseNet(**{**defaults, **kwargs})


@register_model("densenet121", family="densenet", paper=PAPER, model_cls=DenseNet)
def densenet121(**kwargs) -> DenseNet:
    """DenseNet-BC-121 (k=32), torchvision-compatible; 8.0M params."""
    return _create("densenet121", **kwargs)


@register_model("densenet161", family="densenet", paper=PAPER, model_cls=DenseNet, heavy=True)
def densenet161(**kwargs) -> DenseNet:
    """DenseNet-BC-161 (k=48, 96 stem channels), torchvision-compatible; 28.7M params."""
    return _create("densenet161", **kwargs)


@register_model("densenet169", family="densenet", paper=PAPER, model_cls=DenseNet, heavy=True)
def densenet169(**kwargs) -> DenseNet:
    """DenseNet-BC-169 (k=32), torchvision-compatible;
    14.1M params (heavy: > 2 GFLOPs even at 32x32)."""
    return _create("densenet169", **kwargs)


@register_model("densenet201", family="densenet", paper=PAPER, model_cls=DenseNet, heavy=True)
def densenet201(**kwargs) -> DenseNet:
    """DenseNet-BC-201 (k=32), torchvision-compatible;
    20.0M params (heavy: > 2 GFLOPs even at 32x32)."""
    return _create("densenet201", **kwargs)


@register_model("densenet_bc_100_k12", family="densenet", paper=PAPER, model_cls=DenseNet)
def densenet_bc_100_k12(**kwargs) -> DenseNet:
    """CIFAR DenseNet-BC, depth 100, k=12 (paper: 0.8M params, 4.51% error on C10+)."""
    return _create("densenet_bc_100_k12", **kwargs)


@register_model("densenet_bc_40_k12", family="densenet", paper=PAPER, model_cls=DenseNet)
def densenet_bc_40_k12(**kwargs) -> DenseNet:
    """A small CIFAR DenseNet-BC (depth 40, k=12, 6 bottleneck layers per block)."""
    return _create("densenet_bc_40_k12", **kwargs)
