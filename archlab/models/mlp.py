"""Multilayer perceptron with configurable depth, width, activation, norm and dropout.

Deep MLPs (10+ hidden layers) are the workhorse of activation-function studies. With
``act="selu"`` the net becomes a self-normalizing network (Klambauer et al. 2017): LeCun-normal
initialization and alpha dropout, which is what keeps activations at zero mean / unit variance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.norms import create_norm
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

PAPER_SNN = "Klambauer et al., Self-Normalizing Neural Networks, NeurIPS 2017"


class MLP(Classifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 depth: int = 2, width: int = 256, act: str = "relu", norm: str = "none",
                 drop_rate: float = 0.0) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.num_classes = num_classes
        self.num_features = width
        self.self_normalizing = act == "selu"
        in_features = in_chans * img_size * img_size
        blocks = []
        for i in range(depth):
            layers = [nn.Linear(in_features if i == 0 else width, width),
                      create_norm(norm, width, dims=1), create_act(act)]
            if drop_rate > 0:
                # Plain dropout breaks SELU's fixed point; alpha dropout preserves it.
                layers.append(nn.AlphaDropout(drop_rate) if self.self_normalizing
                              else nn.Dropout(drop_rate))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.Sequential(*blocks)
        self.fc = linear_or_identity(width, num_classes)
        self.default_cfg = DefaultCfg(input_size=(in_chans, img_size, img_size),
                                      num_classes=num_classes, classifier="fc", first_conv=None,
                                      family="mlp", paper=PAPER_SNN if self.self_normalizing else "")
        if self.self_normalizing:
            self.apply(_lecun_normal_)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.flatten(1))  # (B, C, H, W) -> (B, width)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of every hidden layer (after its activation / dropout)."""
        outs, x = [], x.flatten(1)
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs


def _lecun_normal_(module: nn.Module) -> None:
    # LeCun normal: N(0, 1/fan_in), the initialization SELU's fixed point assumes.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(module.in_features))
        nn.init.zeros_(module.bias)


@register_model("mlp", family="mlp", model_cls=MLP)
def mlp(**kwargs) -> MLP:
    """Two hidden layers of 256 units."""
    return MLP(**kwargs)


@register_model("mlp_deep", family="mlp", model_cls=MLP)
def mlp_deep(**kwargs) -> MLP:
    """Ten hidden layers of 128 units, for activation-function and depth studies."""
    return MLP(**{"depth": 10, "width": 128, **kwargs})
