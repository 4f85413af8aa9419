"""AlexNet as torchvision ships it: the one-GPU variant of Krizhevsky's "One weird trick"
(2014) with 64-192-384-256-256 conv channels, not the two-tower 96-256-384-384-256 net of the
2012 paper (no local response norm, no grouped convs). Layout ``features.N``,
``avgpool = AdaptiveAvgPool2d(6)``, ``classifier.1/4/6`` with dropout *before* each hidden
Linear, so torchvision checkpoints load and compute the same function. Usage::

    model = create_model("alexnet", num_classes=10, in_chans=1, stem="small")

``stem="small"`` (28x28 / 32x32): the 11x11/4 first conv becomes 3x3/1 (an 11x11/4 conv and
three 3x3/2 pools would shrink 32 px to nothing), the head pools globally (256 features) and its
hidden width drops from 4096 to 1024, keeping the model ~4M params instead of ~60M.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = ("Krizhevsky, One weird trick for parallelizing convolutional neural networks, "
         "arXiv:1404.5997, 2014 (AlexNet: Krizhevsky et al., NeurIPS 2012)")
STEMS = ("imagenet", "small")
POOL_INDICES = (2, 5, 12)  # max-pools in ``features``; each closes a stage


class AlexNet(Classifier):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 act: str = "relu", drop_rate: float = 0.5) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
        small = stem == "small"
        self.num_classes = num_classes
        first = (nn.Conv2d(in_chans, 64, 3, 1, padding=1) if small
                 else nn.Conv2d(in_chans, 64, 11, 4, padding=2))
        self.features = nn.Sequential(  # (B, C, 224, 224) -> (B, 256, 6, 6)
            first, create_act(act), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), create_act(act), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), create_act(act),
            nn.Conv2d(384, 256, 3, padding=1), create_act(act),
            nn.Conv2d(256, 256, 3, padding=1), create_act(act), nn.MaxPool2d(3, 2))
        pooled = 1 if small else 6
        hidden = 1024 if small else 4096
        self.avgpool = nn.AdaptiveAvgPool2d(pooled)
        self.num_features = hidden
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate), nn.Linear(256 * pooled * pooled, hidden), create_act(act),
            nn.Dropout(drop_rate), nn.Linear(hidden, hidden), create_act(act),
            linear_or_identity(hidden, num_classes))
        size = 32 if small else 224
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, size, size), num_classes=num_classes, classifier="classifier.6",
            first_conv="features.0", **imagenet_stats(in_chans), family="alexnet", paper=PAPER)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 256, h, w) -> (B, 256 * 6 * 6)
        x = self.classifier[:6](x)
        return x if pre_logits else self.classifier[6](x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier[6] = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of the three max-pools (strides 8, 16, 32 with the imagenet stem)."""
        outs, start = [], 0
        for end in POOL_INDICES:
            x = self.features[start:end + 1](x)
            outs.append(x)
            start = end + 1
        return outs


@register_model("alexnet", family="alexnet", paper=PAPER, model_cls=AlexNet)
def alexnet(**kwargs) -> AlexNet:
    """torchvision's AlexNet (61.1M params at 224; ~3.7M with stem="small")."""
    return AlexNet(**kwargs)
