"""LeNet-5 (LeCun et al. 1998, Sec. II-B and Fig. 2), the convolutional net for 32x32 digits.

C1: 6 maps 5x5 -> S2: 2x2 subsampling -> C3: 16 maps 5x5 -> S4: 2x2 subsampling -> C5: 120
maps 5x5 (1x1 output: a conv that acts as a fully connected layer) -> F6: 84 units -> output.
MNIST's 28x28 digits were centred in a 32x32 field; ``img_size=28`` does the same with a 2-pixel
zero padding on C1, so both sizes give the paper's 28 -> 14 -> 10 -> 5 -> 1 maps. Usage::

    model = create_model("lenet5")                                   # 1x28x28, 10 classes
    model = create_model("lenet5", in_chans=3, img_size=32, act="relu")

Simplifications, as in most modern reimplementations: S2/S4 are plain average pools (the
paper's subsampling had a trainable coefficient, bias and squashing per map), C3 is
fully connected to S2's 6 maps (the paper's Table I sparse connection table broke symmetry on
1998 hardware), the activation is ``tanh`` rather than the scaled ``1.7159 tanh(2a/3)``, and the
output is a Linear layer instead of Euclidean RBF units.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model

PAPER = "LeCun et al., Gradient-Based Learning Applied to Document Recognition, Proc. IEEE 1998"
PADDING = {28: 2, 32: 0}  # C1 padding placing the digit in the paper's 32x32 field


class LeNet5(Classifier):
    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28,
                 act: str = "tanh") -> None:
        super().__init__()
        if img_size not in PADDING:
            raise ValueError(f"LeNet-5 takes 28x28 or 32x32 inputs, got img_size={img_size}")
        self.num_classes = num_classes
        self.num_features = 84
        self.features = nn.Sequential(OrderedDict(
            c1=nn.Conv2d(in_chans, 6, 5, padding=PADDING[img_size]),  # -> (B, 6, 28, 28)
            act1=create_act(act),
            s2=nn.AvgPool2d(2),                                        # -> (B, 6, 14, 14)
            c3=nn.Conv2d(6, 16, 5),                                    # -> (B, 16, 10, 10)
            act2=create_act(act),
            s4=nn.AvgPool2d(2),                                        # -> (B, 16, 5, 5)
            c5=nn.Conv2d(16, 120, 5),                                  # -> (B, 120, 1, 1)
            act3=create_act(act),
        ))
        self.f6 = nn.Linear(120, 84)
        self.act4 = create_act(act)
        self.fc = linear_or_identity(84, num_classes)
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, img_size, img_size), num_classes=num_classes, classifier="fc",
            first_conv="features.c1", mean=(0.5,) * in_chans, std=(0.5,) * in_chans,
            family="lenet", paper=PAPER)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, 28, 28) -> (B, 120, 1, 1)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.act4(self.f6(x.flatten(1)))  # (B, 120) -> (B, 84)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """S2 (14x14), S4 (5x5) and C5 (1x1) outputs."""
        f = self.features
        s2 = f.s2(f.act1(f.c1(x)))
        s4 = f.s4(f.act2(f.c3(s2)))
        return [s2, s4, f.act3(f.c5(s4))]


@register_model("lenet5", family="lenet", paper=PAPER, model_cls=LeNet5)
def lenet5(**kwargs) -> LeNet5:
    """LeNet-5, 61.7K params for 10 classes (the paper's 60,000 trainable parameters)."""
    return LeNet5(**kwargs)
