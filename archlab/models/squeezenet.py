"""SqueezeNet (Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and
<0.5MB model size, arXiv:1602.07360, 2016).

Built from :class:`Fire` modules: a 1x1 "squeeze" conv narrows the channels, then parallel 1x1
and 3x3 "expand" convs widen them again (output ``e1x1 + e3x3`` channels). There is no fully
connected layer: the classifier is ``dropout -> 1x1 conv to num_classes -> ReLU -> global
average pool`` (``classifier.1`` is the conv). Layouts are the rows of :data:`SQUEEZENET_SPECS`
with torchvision's indices (``features.3.squeeze ...``, ``classifier.1``), so its checkpoints
load with ``strict=True``:

* 1.0: the paper's Table 1 (7x7/2 stem conv, 96 channels, max-pools after fire4 and fire8);
* 1.1: the SqueezeNet v1.1 of the authors' repository (3x3/2 stem conv, 64 channels, max-pools
  moved earlier), ~2.4x cheaper at the same accuracy.

``stem="small"`` (28x28 / 32x32 inputs): the stem conv becomes 3x3 stride 1 with padding 1 and
its max-pool is dropped (an ``nn.Identity`` keeps the indices), so a 32x32 input reaches the
classifier at 8x8. Usage::

    model = create_model("squeezenet1_1", num_classes=10, in_chans=1, stem="small")
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.models._contract import Classifier, DefaultCfg, imagenet_stats
from archlab.models._factory import register_model

PAPER = ("Iandola et al., SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and "
         "<0.5MB model size, arXiv 2016")


class Fire(nn.Module):
    """squeeze 1x1 (s) -> [expand 1x1 (e1), expand 3x3 (e3)] concatenated: ``e1 + e3`` out."""

    def __init__(self, in_chans: int, squeeze: int, expand1x1: int, expand3x3: int,
                 act: str = "relu") -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_chans, squeeze, 1)
        self.squeeze_activation = create_act(act, inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = create_act(act, inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = create_act(act, inplace=True)
        self.out_chans = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))  # (B, C, H, W) -> (B, s, H, W)
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)),
                          self.expand3x3_activation(self.expand3x3(x))], 1)  # -> (B, e1+e3, H, W)


@dataclass(frozen=True)
class SqueezeNetSpec:
    stem_chans: int
    stem_kernel: int
    # After the stem (conv, act, pool): "M" is a 3x3/2 max-pool, (s, e1, e3) a Fire module.
    layers: tuple


SQUEEZENET_SPECS: dict[str, SqueezeNetSpec] = {
    "squeezenet1_0": SqueezeNetSpec(96, 7, (
        (16, 64, 64), (16, 64, 64), (32, 128, 128), "M",
        (32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M",
        (64, 256, 256))),
    "squeezenet1_1": SqueezeNetSpec(64, 3, (
        (16, 64, 64), (16, 64, 64), "M",
        (32, 128, 128), (32, 128, 128), "M",
        (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256))),
}


class SqueezeNet(Classifier):
    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem_chans: int = 96,
                 stem_kernel: int = 7, layers: tuple = SQUEEZENET_SPECS["squeezenet1_0"].layers,
                 stem: str = "imagenet", drop_rate: float = 0.5, act: str = "relu") -> None:
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem '{stem}'; choose 'imagenet' or 'small'")
        self.num_classes = num_classes
        if stem == "imagenet":
            stem_layers = [nn.Conv2d(in_chans, stem_chans, stem_kernel, stride=2),
                           create_act(act, inplace=True),
                           nn.MaxPool2d(3, stride=2, ceil_mode=True)]
        else:
            stem_layers = [nn.Conv2d(in_chans, stem_chans, 3, padding=1),
                           create_act(act, inplace=True), nn.Identity()]
        modules, channels = stem_layers, stem_chans
        self._stage_ends = [1]  # indices in ``features`` whose outputs forward_intermediates
        for layer in layers:
            if layer == "M":
                self._stage_ends.append(len(modules) - 1)
                modules.append(nn.MaxPool2d(3, stride=2, ceil_mode=True))
            else:
                fire = Fire(channels, *layer, act=act)
                modules.append(fire)
                channels = fire.out_chans
        self._stage_ends.append(len(modules) - 1)
        self.features = nn.Sequential(*modules)
        self.num_features = channels
        self.drop_rate = drop_rate
        self.act_name = act
        self.classifier = self._make_classifier(num_classes)

        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 224, 224) if stem == "imagenet" else (in_chans, 32, 32),
            num_classes=num_classes, classifier="classifier.1", first_conv="features.0",
            **imagenet_stats(in_chans),
            family="squeezenet", paper=PAPER)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_classifier(self, num_classes: int) -> nn.Sequential:
        # num_classes == 0: the identity in place of the conv leaves the pooled features.
        if num_classes > 0:
            final_conv = nn.Conv2d(self.num_features, num_classes, 1)
            # Small init (torchvision): the ReLU'd logits start near zero, not dead.
            nn.init.normal_(final_conv.weight, 0.0, 0.01)
            nn.init.zeros_(final_conv.bias)
        else:
            final_conv = nn.Identity()
        # Not in place: with the identity head the activation would overwrite the features.
        return nn.Sequential(nn.Dropout(self.drop_rate), final_conv, create_act(self.act_name),
                             nn.AdaptiveAvgPool2d(1))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C, 224, 224) -> (B, 512, 13, 13)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)  # (B, 512)
        return torch.flatten(self.classifier(x), 1)  # (B, num_classes, 1, 1) -> (B, num_classes)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final 1x1 conv (``classifier.1``); 0 leaves pooled features."""
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes).train(self.training)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Output of the stem and of each run of Fire modules between max-pools."""
        outs = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self._stage_ends:
                outs.append(x)
        return outs


def _create(name: str, **kwargs) -> SqueezeNet:
    spec = SQUEEZENET_SPECS[name]
    return SqueezeNet(**{"stem_chans": spec.stem_chans, "stem_kernel": spec.stem_kernel,
                         "layers": spec.layers, **kwargs})


@register_model("squeezenet1_0", family="squeezenet", paper=PAPER, model_cls=SqueezeNet)
def squeezenet1_0(**kwargs) -> SqueezeNet:
    """SqueezeNet 1.0 (paper, Table 1), torchvision-compatible; 1.25M params."""
    return _create("squeezenet1_0", **kwargs)


@register_model("squeezenet1_1", family="squeezenet", paper=PAPER, model_cls=SqueezeNet)
def squeezenet1_1(**kwargs) -> SqueezeNet:
    """SqueezeNet 1.1, torchvision-compatible; 1.24M params, 0.35 GMACs at 224."""
    return _create("squeezenet1_1", **kwargs)
