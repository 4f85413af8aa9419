"""ImageNet-style ResNets and their descendants: ResNet-18...152 (He et al. 2016), Wide ResNet
(Zagoruyko & Komodakis 2016), ResNeXt (Xie et al. 2017) and SE-ResNet (Hu et al. 2018).

Every variant is a row of :data:`RESNET_VARIANTS` (block type, blocks per stage, groups, width
per group, attention) feeding the one :class:`ResNet` builder. With the defaults the
state_dict matches torchvision's key for key (``conv1, bn1, layer1..4, fc``; projections at
``downsample.0/1``; the stride on the 3x3 conv of the Bottleneck, i.e. "ResNet v1.5"), so
torchvision checkpoints load with ``strict=True`` and compute the same function. Usage::

    model = create_model("resnet18", num_classes=10, in_chans=1, stem="small")   # 28/32 px
    model = create_model("resnet50", attn="cbam", zero_init_last=True)

Options: ``stem="small"`` swaps the 7x7/2 conv + max-pool for one 3x3/1 conv (for 28-32 px
inputs, where a 4x early downsampling would leave 1x1 maps); ``attn="se"|"cbam"`` adds channel
(and spatial) attention on the residual branch after its last norm; ``zero_init_last`` sets the
last norm's scale of every block to zero so each block starts as ``act(shortcut(x))``
(Goyal et al. 2017); ``drop_path_rate`` is stochastic depth, rising linearly with depth
(Huang et al. 2016). Activations are out-of-place so forward hooks see the values they report.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.layers.activations import create_act
from archlab.layers.cbam import CBAM
from archlab.layers.drop import DropPath
from archlab.layers.norms import create_norm
from archlab.layers.squeeze_excite import SqueezeExcite
from archlab.models._contract import Classifier, DefaultCfg, imagenet_stats, linear_or_identity
from archlab.models._factory import register_model

PAPER_RESNET = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016"
PAPER_WIDE = "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016"
PAPER_RESNEXT = ("Xie et al., Aggregated Residual Transformations for Deep Neural Networks, "
                 "CVPR 2017")
PAPER_SE = "Hu et al., Squeeze-and-Excitation Networks, CVPR 2018"

SE_REDUCTION = 16  # Hu et al. 2018, Sec. 6.1: r = 16 balances accuracy and cost
STEMS = ("imagenet", "small")


def create_attn(attn: str | None, channels: int) -> nn.Module:
    """The attention placed on a residual branch: ``None``, ``"se"`` or ``"cbam"``."""
    if attn is None or attn == "none":
        return nn.Identity()
    if attn == "se":
        return SqueezeExcite(channels, max(1, channels // SE_REDUCTION))
    if attn == "cbam":
        return CBAM(channels, reduction=SE_REDUCTION)
    raise ValueError(f"unknown attn {attn!r}; choose None, 'se' or 'cbam'")


def _zero_last(norm: nn.Module, conv: nn.Conv2d) -> None:
    # Zero scale makes the branch output its shift (0 at init); without an affine norm, zero
    # the conv itself so the branch still starts at exactly 0.
    weight = getattr(norm, "weight", None)
    nn.init.zeros_(weight if isinstance(weight, torch.Tensor) else conv.weight)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); ``out = act(attn(bn2(conv2(...))) + shortcut(x))``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 act: str = "relu", norm: str = "batch", attn: str | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock needs groups=1 and width_per_group=64 (got {groups}, "
                             f"{base_width}); use the 'bottleneck' block for ResNeXt / Wide")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = create_norm(norm, planes)
        self.act1 = create_act(act)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = create_norm(norm, planes)
        self.attn = create_attn(attn, planes)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act2 = create_act(act)

    def zero_init_last(self) -> None:
        _zero_last(self.bn2, self.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.attn(self.bn2(self.conv2(out)))
        return self.act2(self.drop_path(out) + self.downsample(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, grouped) -> 1x1 expand x4 (ResNet-50+, ResNeXt, Wide).

    The stride sits on the 3x3 conv as in torchvision ("v1.5"); the paper put it on the first
    1x1. The 3x3 width is ``planes * width_per_group / 64 * groups``: 64 for ResNet-50's first
    stage, 128 for Wide ResNet-50-2, 32 groups x 4 = 128 for ResNeXt-50 32x4d.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, groups: int = 1, base_width: int = 64,
                 act: str = "relu", norm: str = "batch", attn: str | None = None,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_ch = planes * self.expansion
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = create_norm(norm, width)
        self.act1 = create_act(act)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = create_norm(norm, width)
        self.act2 = create_act(act)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = create_norm(norm, out_ch)
        self.attn = create_attn(attn, out_ch)
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act3 = create_act(act)

    def zero_init_last(self) -> None:
        _zero_last(self.bn3, self.conv3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.attn(self.bn3(self.conv3(out)))
        return self.act3(self.drop_path(out) + self.downsample(x))


BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock,
                                                           "bottleneck": Bottleneck}


class ResNet(Classifier):
    """Four stages of residual blocks (64, 128, 256, 512 planes; strides 1, 2, 2, 2)."""

    def __init__(self, block: str = "basic", layers: tuple[int, ...] = (2, 2, 2, 2),
                 groups: int = 1, width_per_group: int = 64, num_classes: int = 1000,
                 in_chans: int = 3, stem: str = "imagenet", act: str = "relu",
                 norm: str = "batch", attn: str | None = None, zero_init_last: bool = False,
                 drop_path_rate: float = 0.0) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {sorted(BLOCKS)}")
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {STEMS}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be 4 positive block counts, got {tuple(layers)}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        block_cls = BLOCKS[block]
        self.num_classes = num_classes
        self.num_features = 512 * block_cls.expansion

        if stem == "imagenet":  # (B, C, 224, 224) -> (B, 64, 56, 56)
            self.conv1 = nn.Conv2d(in_chans, 64, 7, 2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, padding=1)
        else:  # (B, C, 32, 32) -> (B, 64, 32, 32)
            self.conv1 = conv3x3(in_chans, 64)
            self.maxpool = nn.Identity()
        self.bn1 = create_norm(norm, 64)
        self.act = create_act(act)

        total, done = sum(layers), 0
        inplanes = 64
        for i, (planes, depth, stride) in enumerate(zip((64, 128, 256, 512), layers, (1, 2, 2, 2))):
            blocks = []
            for j in range(depth):
                out_ch = planes * block_cls.expansion
                s = stride if j == 0 else 1
                downsample = None
                if s != 1 or inplanes != out_ch:
                    downsample = nn.Sequential(conv1x1(inplanes, out_ch, s),
                                               create_norm(norm, out_ch))
                rate = drop_path_rate * done / max(1, total - 1)
                blocks.append(block_cls(inplanes, planes, s, downsample, groups, width_per_group,
                                        act=act, norm=norm, attn=attn, drop_path=rate))
                inplanes, done = out_ch, done + 1
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = linear_or_identity(self.num_features, num_classes)

        size = 224 if stem == "imagenet" else 32
        self.default_cfg = DefaultCfg(
            input_size=(in_chans, size, size), num_classes=num_classes, classifier="fc",
            first_conv="conv1", **imagenet_stats(in_chans), family="resnet", paper=PAPER_RESNET)
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last()

    @property
    def stages(self) -> tuple[nn.Module, ...]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.act(self.bn1(self.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages:
            x = stage(x)
        return x  # (B, 512 * expansion, H/32, W/32) for the imagenet stem

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C, H, W) -> (B, C)
        return x if pre_logits else self.fc(x)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of layer1..layer4 (strides 4, 8, 16, 32 with the imagenet stem)."""
        outs, x = [], self.forward_stem(x)
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


# Architecture as data: each registered variant is one row.
RESNET_VARIANTS: dict[str, dict] = {
    "resnet18": dict(block="basic", layers=(2, 2, 2, 2)),
    "resnet34": dict(block="basic", layers=(3, 4, 6, 3)),
    "resnet50": dict(block="bottleneck", layers=(3, 4, 6, 3)),
    "resnet101": dict(block="bottleneck", layers=(3, 4, 23, 3)),
    "resnet152": dict(block="bottleneck", layers=(3, 8, 36, 3)),
    "wide_resnet50_2": dict(block="bottleneck", layers=(3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": dict(block="bottleneck", layers=(3, 4, 23, 3), width_per_group=128),
    "resnext50_32x4d": dict(block="bottleneck", layers=(3, 4, 6, 3), groups=32,
                            width_per_group=4),
    "resnext101_32x8d": dict(block="bottleneck", layers=(3, 4, 23, 3), groups=32,
                             width_per_group=8),
    "seresnet18": dict(block="basic", layers=(2, 2, 2, 2), attn="se"),
    "seresnet34": dict(block="basic", layers=(3, 4, 6, 3), attn="se"),
    "seresnet50": dict(block="bottleneck", layers=(3, 4, 6, 3), attn="se"),
}


def _build(variant: str, paper: str, kwargs: dict) -> ResNet:
    row = RESNET_VARIANTS[variant]
    fixed = sorted(set(row) & set(kwargs))
    if fixed:
        raise TypeError(f"{fixed} fixed by variant '{variant}' ({row}); build ResNet(...) "
                        f"directly for a custom architecture")
    model = ResNet(**row, **kwargs)
    model.default_cfg = model.default_cfg.with_(paper=paper)
    return model


@register_model("resnet18", family="resnet", paper=PAPER_RESNET, model_cls=ResNet)
def resnet18(**kwargs) -> ResNet:
    """ResNet-18: BasicBlock x (2, 2, 2, 2), 11.7M params."""
    return _build("resnet18", PAPER_RESNET, kwargs)


@register_model("resnet34", family="resnet", paper=PAPER_RESNET, model_cls=ResNet, heavy=True)
def resnet34(**kwargs) -> ResNet:
    """ResNet-34: BasicBlock x (3, 4, 6, 3), 21.8M params."""
    return _build("resnet34", PAPER_RESNET, kwargs)


@register_model("resnet50", family="resnet", paper=PAPER_RESNET, model_cls=ResNet, heavy=True)
def resnet50(**kwargs) -> ResNet:
    """ResNet-50: Bottleneck x (3, 4, 6, 3), 25.6M params."""
    return _build("resnet50", PAPER_RESNET, kwargs)


@register_model("resnet101", family="resnet", paper=PAPER_RESNET, model_cls=ResNet, heavy=True)
def resnet101(**kwargs) -> ResNet:
    """ResNet-101: Bottleneck x (3, 4, 23, 3), 44.5M params."""
    return _build("resnet101", PAPER_RESNET, kwargs)


@register_model("resnet152", family="resnet", paper=PAPER_RESNET, model_cls=ResNet, heavy=True)
def resnet152(**kwargs) -> ResNet:
    """ResNet-152: Bottleneck x (3, 8, 36, 3), 60.2M params."""
    return _build("resnet152", PAPER_RESNET, kwargs)


@register_model("wide_resnet50_2", family="resnet", paper=PAPER_WIDE, model_cls=ResNet,
                heavy=True)
def wide_resnet50_2(**kwargs) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with twice the bottleneck width, 68.9M params."""
    return _build("wide_resnet50_2", PAPER_WIDE, kwargs)


@register_model("wide_resnet101_2", family="resnet", paper=PAPER_WIDE, model_cls=ResNet,
                heavy=True)
def wide_resnet101_2(**kwargs) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with twice the bottleneck width, 126.9M params."""
    return _build("wide_resnet101_2", PAPER_WIDE, kwargs)


@register_model("resnext50_32x4d", family="resnet", paper=PAPER_RESNEXT, model_cls=ResNet,
                heavy=True)
def resnext50_32x4d(**kwargs) -> ResNet:
    """ResNeXt-50 (32x4d): cardinality 32, 4 channels per group in the first stage."""
    return _build("resnext50_32x4d", PAPER_RESNEXT, kwargs)


@register_model("resnext101_32x8d", family="resnet", paper=PAPER_RESNEXT, model_cls=ResNet,
                heavy=True)
def resnext101_32x8d(**kwargs) -> ResNet:
    """ResNeXt-101 (32x8d): cardinality 32, 8 channels per group in the first stage."""
    return _build("resnext101_32x8d", PAPER_RESNEXT, kwargs)


@register_model("seresnet18", family="resnet", paper=PAPER_SE, model_cls=ResNet)
def seresnet18(**kwargs) -> ResNet:
    """SE-ResNet-18: squeeze-excite (r=16) on every residual branch."""
    return _build("seresnet18", PAPER_SE, kwargs)


@register_model("seresnet34", family="resnet", paper=PAPER_SE, model_cls=ResNet, heavy=True)
def seresnet34(**kwargs) -> ResNet:
    """SE-ResNet-34: squeeze-excite (r=16) on every residual branch."""
    return _build("seresnet34", PAPER_SE, kwargs)


@register_model("seresnet50", family="resnet", paper=PAPER_SE, model_cls=ResNet, heavy=True)
def seresnet50(**kwargs) -> ResNet:
    """SE-ResNet-50: squeeze-excite (r=16) on every residual branch, 28.1M params."""
    return _build("seresnet50", PAPER_SE, kwargs)
