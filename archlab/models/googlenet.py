"""GoogLeNet / Inception v1 (Szegedy et al., Going Deeper with Convolutions, CVPR 2015).

Nine :class:`~archlab.layers.inception.Inception` modules (Table 1 of the paper, as data in
:data:`INCEPTION_STAGES`) in three stages separated by max-pools, with torchvision's module
names and computation (BatchNorm with eps 1e-3 after every conv, ``ceil_mode=True`` pools,
adaptive 4x4 pooling in the auxiliary heads, dropout 0.2 before ``fc``), so torchvision's
checkpoint loads with ``strict=True``.

Auxiliary classifiers: with ``aux_logits=True`` (the default, as in torchvision) two
:class:`InceptionAux` heads sit on inception (4a) and (4d). In training mode ``forward`` then
returns ``{"logits": main, "aux_logits": [aux1, aux2]}``; the training task adds the aux losses
weighted by :attr:`GoogLeNet.aux_loss_weight` (0.3, Section 5 of the paper). In eval mode, or
with ``aux_logits=False``, ``forward`` returns the logits tensor only. ``num_classes=0`` (or
``reset_classifier(0)``) leaves no aux heads: without classes there is nothing to supervise.

``stem="small"`` (28x28 / 32x32 inputs): ``conv1`` becomes 3x3 stride 1 and ``maxpool1`` is
dropped, so the inception stages run at 16, 8 and 4 pixels for a 32x32 input. Usage::

    model = create_model("googlenet", num_classes=10, in_chans=1, stem="small")
    out = model(x)  # train mode: dict with "logits" and "aux_logits"
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.inception import BasicConv2d, Inception, transform_input
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = "Szegedy et al., Going Deeper with Convolutions, CVPR 2015"

# Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj, per module of each stage.
INCEPTION_STAGES: tuple[dict[str, tuple[int, ...]], ...] = (
    {"3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64)},
    {"4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
     "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
     "4e": (256, 160, 320, 32, 128, 128)},
    {"5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128)},
)
# Max-pool before stages 2 and 3 (maxpool3, maxpool4); torchvision's second one is 2x2.
STAGE_POOL_KERNELS = (3, 2)
AUX_HEADS = {"inception4a": "aux1", "inception4d": "aux2"}  # module the head reads -> head


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 avg-pool -> 1x1 conv (128) -> fc 1024 -> dropout 0.7 -> fc."""

    def __init__(self, in_chans: int, num_classes: int, drop_rate: float = 0.7,
                 norm: str = "batch", act: str = "relu") -> None:
        super().__init__()
        self.conv = BasicConv2d(in_chans, 128, 1, norm=norm, act=act)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.act = create_act(act, inplace=True)
        self.dropout = nn.Dropout(drop_rate)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.adaptive_avg_pool2d(x, 4))  # (B, C, H, W) -> (B, 128, 4, 4)
        x = self.act(self.fc1(torch.flatten(x, 1)))  # -> (B, 1024)
        return self.fc2(self.dropout(x))


class GoogLeNet(Classifier):
    #: Weight of each auxiliary loss in the training objective (Szegedy et al. 2015, Sec. 5).
    aux_loss_weight = 0.3

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 aux_logits: bool = True, drop_rate: float = 0.2, aux_drop_rate: float = 0.7,
                 branch3_kernel: int = 3, transform_input: bool = False, act: str = "relu",
                 norm: str = "batch") -> None:
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem '{stem}'; choose 'imagenet' or 'small'")
        if transform_input and in_chans != 3:
            raise ValueError(f"transform_input maps ImageNet RGB statistics and needs in_chans=3, "
                             f"got in_chans={in_chans}")
        self.num_classes = num_classes
        # Without classes (num_classes=0, a feature extractor) there is nothing to supervise.
        self.aux_logits = aux_logits = aux_logits and num_classes > 0
        self.transform_input = transform_input
        conv = dict(norm=norm, act=act)
        if stem == "imagenet":
            self.conv1 = BasicConv2d(in_chans, 64, 7, stride=2, padding=3, **conv)  # -> H/2
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # -> H/4
        else:
            self.conv1 = BasicConv2d(in_chans, 64, 3, padding=1, **conv)
            self.maxpool1 = nn.Identity()
        self.conv2 = BasicConv2d(64, 64, 1, **conv)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, **conv)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # -> (B, 192, H/8, W/8)
        self._trunk = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2"]
        channels, tap_chans = 192, {}
        for i, stage in enumerate(INCEPTION_STAGES):
            if i > 0:
                pool = f"maxpool{i + 2}"
                self.add_module(pool, nn.MaxPool2d(STAGE_POOL_KERNELS[i - 1], stride=2,
                                                   ceil_mode=True))  # H/2
                self._trunk.append(pool)
            for name, widths in stage.items():
                block = Inception(channels, *widths, branch3_kernel=branch3_kernel, **conv)
                self.add_module(f"inception{name}", block)
                self._trunk.append(f"inception{name}")
                channels = block.out_chans
                tap_chans[f"inception{name}"] = channels
        self._stage_ends = ("conv3", "inception3b", "inception4e", "inception5b")
        if aux_logits:
            for tap, head in AUX_HEADS.items():
                self.add_module(head, InceptionAux(tap_chans[tap], num_classes, aux_drop_rate,
                                                   **conv))
        else:
            self.aux1 = self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.num_features = channels
        self.fc = linear_or_identity(channels, num_classes)

        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32),
            num_classes=num_classes, classifier="fc", first_conv="conv1.conv",
            **imagenet_stats(in_chans),
            family="googlenet", paper=PAPER)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _run_trunk(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, list]:
        if self.transform_input:
            x = transform_input(x)
        aux = []
        for name in self._trunk:
            x = getattr(self, name)(x)
            if with_aux and name in AUX_HEADS:
                aux.append(getattr(self, AUX_HEADS[name])(x))
        return x, aux

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_trunk(x, with_aux=False)[0]  # (B, C, H, W) -> (B, 1024, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # -> (B, 1024)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict:
        if self.training and self.aux_logits:
            x, aux = self._run_trunk(x, with_aux=True)
            return {"logits": self.forward_head(x), "aux_logits": aux}
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """New ``fc`` (and aux ``fc2``) for ``num_classes``; 0 also removes the aux heads."""
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)
        if self.aux_logits:
            if num_classes > 0:
                for head in AUX_HEADS.values():
                    getattr(self, head).fc2 = nn.Linear(1024, num_classes)
            else:
                self.aux1 = self.aux2 = None
                self.aux_logits = False

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Ends of the stem (conv3) and of each inception stage (3b, 4e, 5b), shallow to deep."""
        if self.transform_input:
            x = transform_input(x)
        outs = []
        for name in self._trunk:
            x = getattr(self, name)(x)
            if name in self._stage_ends:
                outs.append(x)
        return outs


@register_model("googlenet", family="googlenet", paper=PAPER, model_cls=GoogLeNet)
def googlenet(**kwargs) -> GoogLeNet:
    """GoogLeNet with BN, torchvision-compatible (13.0M params with aux heads, 6.6M without)."""
    return GoogLeNet(**kwargs)
