"""Small fast CNNs for 28x28 / 32x32 images, the workhorse of the quick recipes.

Each stage is ``conv3x3 -> max-pool 2 -> BN -> act`` followed by ``convs - 1`` more
``conv3x3 -> BN -> act``: pooling right after the first conv of a stage (as in airbench,
Jordan 2024) runs the stage's remaining convs at a quarter of the pixels. The head is a global
max-pool and a linear classifier; ``drop_rate`` drops pre-logit features, ``spatial_drop_rate``
whole channels after every stage. ``block`` swaps the 3x3 convs after the stem for a cheaper
kind (``separable``, ``bottleneck``, ``reduce``: :mod:`archlab.models.cnn_blocks`) at the same
widths. A variant is a row of ``CNN_VARIANTS``.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.drop import SpatialDropout
from archlab.models._contract import Classifier, DefaultCfg, linear_or_identity
from archlab.models._factory import register_model
from archlab.models.cnn_blocks import conv_block

# name: (stage widths, convs per stage)
CNN_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "cnn_tiny": ((16, 32, 64), (1, 1, 1)),
    "cnn_small": ((32, 64, 128), (1, 1, 1)),
    "cnn_fast": ((32, 64, 128), (1, 2, 2)),
    "cnn_medium": ((48, 96, 192), (1, 2, 2)),
    "cnn_wide": ((64, 128, 256), (1, 2, 2)),
}


class CNN(Classifier):
    def __init__(self, widths: tuple[int, ...], convs: tuple[int, ...], num_classes: int = 10,
                 in_chans: int = 1, img_size: int = 28, act: str = "relu", norm: str = "batch",
                 drop_rate: float = 0.0, spatial_drop_rate: float = 0.0, block: str = "standard",
                 reduction: int = 4) -> None:
        super().__init__()
        self.num_classes, self.num_features = num_classes, widths[-1]
        stages, c = [], in_chans
        for s, (width, n) in enumerate(zip(widths, convs)):
            # The stem (first conv of the network) is standard in every block kind.
            blocks = [conv_block("standard" if s == i == 0 else block, c if i == 0 else width,
                                 width, act, norm, pool=i == 0, reduction=reduction)
                      for i in range(n)]
            if spatial_drop_rate > 0:  # whole feature maps (Tompson et al. 2015), after the stage
                blocks.append(SpatialDropout(spatial_drop_rate))
            stages.append(nn.Sequential(*blocks))
            c = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = linear_or_identity(c, num_classes)
        self.default_cfg = DefaultCfg(input_size=(in_chans, img_size, img_size),
                                      num_classes=num_classes, classifier="fc",
                                      first_conv="stages.0.0.0", family="cnn")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)  # (B, C, H, W) -> (B, widths[-1], H/8, W/8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def _register(name: str, widths: tuple[int, ...], convs: tuple[int, ...]) -> None:
    def build(num_classes: int = 10, in_chans: int = 1, img_size: int = 28, act: str = "relu",
              norm: str = "batch", drop_rate: float = 0.0, spatial_drop_rate: float = 0.0,
              block: str = "standard", reduction: int = 4) -> CNN:
        return CNN(widths, convs, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                   act=act, norm=norm, drop_rate=drop_rate, spatial_drop_rate=spatial_drop_rate,
                   block=block, reduction=reduction)

    build.__doc__ = f"CNN with stage widths {widths} and {convs} convs per stage."
    register_model(name, family="cnn")(build)


for _name, (_widths, _convs) in CNN_VARIANTS.items():
    _register(_name, _widths, _convs)
