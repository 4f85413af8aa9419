"""VGG (Simonyan & Zisserman, ICLR 2015): stacks of 3x3 convs separated by 2x2 max-pools.

The paper's Table 1 configurations A, B, D, E (VGG-11/13/16/19) are data in :data:`VGG_CFGS`;
``*_bn`` variants put a BatchNorm after every conv (Ioffe & Szegedy 2015, torchvision's
``vgg*_bn``). With the defaults the layout is torchvision's (``features.N``,
``avgpool = AdaptiveAvgPool2d(7)``, ``classifier.0/3/6`` = 4096-4096-classes with ReLU and
dropout), so its checkpoints load and compute the same function. Usage::

    model = create_model("vgg16_bn", num_classes=10, stem="small")            # CIFAR-10

``stem="small"`` (28x28 / 32x32 inputs) is the common CIFAR-VGG shape: the fifth max-pool is
dropped (a 32x32 input ends at 2x2, a 28x28 one at 1x1 instead of vanishing) and the head is
global average pooling + one Linear(512, classes) at ``classifier.0``: the 4096-wide MLP would
hold ~120M parameters for a 1-2 pixel map. Conv indices in ``features`` are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = ("Simonyan & Zisserman, Very Deep Convolutional Networks for Large-Scale Image "
         "Recognition, ICLR 2015")
STEMS = ("imagenet", "small")

# Paper Table 1: conv widths, "M" = 2x2/2 max-pool. A = VGG-11, B = 13, D = 16, E = 19.
VGG_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


class VGG(Classifier):
    def __init__(self, cfg: str = "A", num_classes: int = 1000, in_chans: int = 3,
                 norm: str = "none", act: str = "relu", stem: str = "imagenet",
                 drop_rate: float = 0.5) -> None:
        super().__init__()
        if cfg not in VGG_CFGS:
            raise ValueError(f"unknown VGG configuration {cfg!r}; choose one of {sorted(VGG_CFGS)}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
        spec = list(VGG_CFGS[cfg])
        if stem == "small":
            spec = spec[:-1]  # keep 28x28 inputs alive: 28 -> 14 -> 7 -> 3 -> 1
        self.num_classes = num_classes
        self.stem = stem

        layers: list[nn.Module] = []
        self.stage_ends: list[int] = []  # index in ``features`` closing each stage
        in_ch = in_chans
        has_norm = norm != "none"
        for item in spec:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                self.stage_ends.append(len(layers) - 1)
                continue
            layers.append(nn.Conv2d(in_ch, int(item), 3, padding=1))
            if has_norm:
                layers.append(create_norm(norm, int(item)))
            layers.append(create_act(act))
            in_ch = int(item)
        if stem == "small":
            self.stage_ends.append(len(layers) - 1)
        self.features = nn.Sequential(*layers)

        if stem == "imagenet":
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.num_features = 4096
            # (B, 512 * 7 * 7) -> 4096 -> 4096 -> classes; dropout after each hidden ReLU
            self.classifier = nn.Sequential(
                nn.Linear(in_ch * 7 * 7, 4096), create_act(act), nn.Dropout(drop_rate),
                nn.Linear(4096, 4096), create_act(act), nn.Dropout(drop_rate),
                linear_or_identity(4096, num_classes))
            size = 224
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.num_features = in_ch
            self.classifier = nn.Sequential(linear_or_identity(in_ch, num_classes))
            size = 32
        self._head_index = len(self.classifier) - 1
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, size, size), num_classes=num_classes,
            classifier=f"classifier.{self._head_index}", first_conv="features.0",
            **imagenet_stats(in_chans), family="vgg", paper=PAPER)
        self._init_weights()

    def _init_weights(self) -> None:  # torchvision's VGG init
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, 224, 224) -> (B, 512, 7, 7)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 512, h, w) -> (B, 512 * 7 * 7) or (B, 512)
        x = self.classifier[:self._head_index](x)
        return x if pre_logits else self.classifier[self._head_index](x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[self._head_index] = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The feature map closing each stage (after its max-pool): 5 maps, strides 2..32."""
        outs, start = [], 0
        for end in self.stage_ends:
            x = self.features[start:end + 1](x)
            outs.append(x)
            start = end + 1
        return outs


def _build(cfg: str, norm: str, kwargs: dict) -> VGG:
    fixed = sorted({"cfg"} & set(kwargs))
    if fixed:
        raise TypeError(f"{fixed} fixed by the variant; build VGG(...) directly instead")
    return VGG(cfg=cfg, **{"norm": norm, **kwargs})


@register_model("vgg11", family="vgg", paper=PAPER, model_cls=VGG)
def vgg11(**kwargs) -> VGG:
    """Configuration A: 8 convs + 3 FC (132.9M params at 224, 9.2M with stem="small")."""
    return _build("A", "none", kwargs)


@register_model("vgg13", family="vgg", paper=PAPER, model_cls=VGG)
def vgg13(**kwargs) -> VGG:
    """Configuration B: 10 convs + 3 FC."""
    return _build("B", "none", kwargs)


@register_model("vgg16", family="vgg", paper=PAPER, model_cls=VGG)
def vgg16(**kwargs) -> VGG:
    """Configuration D: 13 convs + 3 FC."""
    return _build("D", "none", kwargs)


@register_model("vgg19", family="vgg", paper=PAPER, model_cls=VGG)
def vgg19(**kwargs) -> VGG:
    """Configuration E: 16 convs + 3 FC."""
    return _build("E", "none", kwargs)


@register_model("vgg11_bn", family="vgg", paper=PAPER, model_cls=VGG)
def vgg11_bn(**kwargs) -> VGG:
    """VGG-11 with BatchNorm after every conv."""
    return _build("A", "batch", kwargs)


@register_model("vgg13_bn", family="vgg", paper=PAPER, model_cls=VGG)
def vgg13_bn(**kwargs) -> VGG:
    """VGG-13 with BatchNorm after every conv."""
    return _build("B", "batch", kwargs)


@register_model("vgg16_bn", family="vgg", paper=PAPER, model_cls=VGG)
def vgg16_bn(**kwargs) -> VGG:
    """VGG-16 with BatchNorm after every conv."""
    return _build("D", "batch", kwargs)


@register_model("vgg19_bn", family="vgg", paper=PAPER, model_cls=VGG)
def vgg19_bn(**kwargs) -> VGG:
    """VGG-19 with BatchNorm after every conv."""
    return _build("E", "batch", kwargs)
