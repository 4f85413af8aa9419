"""Inception-v3 (Szegedy et al., Rethinking the Inception Architecture for Computer Vision,
CVPR 2016).

The v3 modules factorize large convolutions (Section 3): a 5x5 becomes two stacked 3x3s
(:class:`InceptionA`), an n x n becomes a 1 x n followed by an n x 1 (n = 7 in
:class:`InceptionC`, same receptive field for 2n instead of n^2 weights per channel pair), and
the coarsest grid splits a 3x3 into parallel 1x3 and 3x1 outputs (:class:`InceptionE`, "expanded
filter bank"); grid reductions (:class:`InceptionB`, :class:`InceptionD`) run a stride-2 conv
and a max-pool side by side. The network is the table :data:`MIXED_BLOCKS` with torchvision's
names and computation (``Conv2d_1a_3x3 ... Mixed_5b ... Mixed_7c``, ``AuxLogits``, ``fc``;
BatchNorm eps 1e-3, average pools counting padding), so torchvision's checkpoint loads with
``strict=True``. The default input is 299x299 (at least 75x75).

Auxiliary classifier: with ``aux_logits=True`` (default, as in torchvision) ``AuxLogits`` reads
``Mixed_6e`` (17x17 grid). In training mode ``forward`` then returns
``{"logits": main, "aux_logits": [aux]}``, else the logits tensor (``num_classes=0`` or
``reset_classifier(0)`` removes the head). The paper gives no aux loss
weight; :attr:`Inception3.aux_loss_weight` = 0.4 is the weight of Google's TensorFlow reference
training (``inception_model.loss`` in tensorflow/models, which the torchvision checkpoint was
ported from).

``stem="small"`` (28x28 / 32x32 inputs): every stem conv becomes stride 1 with "same" padding
and ``maxpool1`` is dropped, so the 35/17/8 grids become 15/7/3 for a 32x32 input; the aux head
then pools adaptively to 5x5 instead of a fixed 5x5/3 average pool. Usage::

    model = create_model("inception_v3", num_classes=10)              # 299x299 input
    model = create_model("inception_v3", num_classes=10, in_chans=1, stem="small")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.inception import BasicConv2d, transform_input
from archlab.models._contract import (Classifier, DefaultCfg, imagenet_stats,
                                       linear_or_identity)
from archlab.models._factory import register_model

PAPER = ("Szegedy et al., Rethinking the Inception Architecture for Computer Vision, "
         "CVPR 2016")


def _avg_pool_3x3(x: torch.Tensor) -> torch.Tensor:
    # torchvision's pool branch: 3x3/1, zero padding counted in the average.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)


class InceptionA(nn.Module):
    """35x35 grid (Figure 5): 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | avgpool->1x1.

    Out channels 224 + pool_features. (torchvision keeps one 5x5 branch next to the
    factorized double 3x3.)
    """

    def __init__(self, in_chans: int, pool_features: int, **conv) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_chans, 64, 1, **conv)
        self.branch5x5_1 = BasicConv2d(in_chans, 48, 1, **conv)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2, **conv)
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 64, 1, **conv)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, **conv)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1, **conv)
        self.branch_pool = BasicConv2d(in_chans, pool_features, 1, **conv)
        self.out_chans = 64 + 64 + 96 + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)  # (B, C, H, W) -> (B, out_chans, H, W)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Figure 10): 3x3/2 | 1x1->3x3->3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_chans: int, **conv) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_chans, 384, 3, stride=2, **conv)
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 64, 1, **conv)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1, **conv)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2, **conv)
        self.out_chans = 384 + 96 + in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        b3d = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b3d, bp], 1)  # (B, C, H, W) -> (B, out_chans, (H-3)//2+1, ...)


class InceptionC(nn.Module):
    """17x17 grid (Figure 6, n = 7): 1x1 | 1x1->1x7->7x1 | 1x1->7x1->1x7->7x1->1x7 |
    avgpool->1x1. The 7x7 branch sees a 7x7 window, the double one 13x13; out 768 channels."""

    def __init__(self, in_chans: int, channels_7x7: int, **conv) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_chans, 192, 1, **conv)
        self.branch7x7_1 = BasicConv2d(in_chans, c7, 1, **conv)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), **conv)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0), **conv)
        self.branch7x7dbl_1 = BasicConv2d(in_chans, c7, 1, **conv)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), **conv)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3), **conv)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0), **conv)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3), **conv)
        self.branch_pool = BasicConv2d(in_chans, 192, 1, **conv)
        self.out_chans = 4 * 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                     self.branch7x7dbl_5):
            b7d = conv(b7d)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b7, b7d, bp], 1)  # (B, C, H, W) -> (B, 768, H, W)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_chans: int, **conv) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_chans, 192, 1, **conv)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2, **conv)
        self.branch7x7x3_1 = BasicConv2d(in_chans, 192, 1, **conv)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3), **conv)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0), **conv)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2, **conv)
        self.out_chans = 320 + 192 + in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)  # (B, C, H, W) -> (B, out_chans, (H-3)//2+1, ...)


class InceptionE(nn.Module):
    """8x8 grid (Figure 7): 1x1 | 1x1->[1x3, 3x1] | 1x1->3x3->[1x3, 3x1] | avgpool->1x1.

    The bracketed pairs run in parallel on the same input and are concatenated, widening the
    representation on the coarsest grid; out 2048 channels.
    """

    def __init__(self, in_chans: int, **conv) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_chans, 320, 1, **conv)
        self.branch3x3_1 = BasicConv2d(in_chans, 384, 1, **conv)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), **conv)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), **conv)
        self.branch3x3dbl_1 = BasicConv2d(in_chans, 448, 1, **conv)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1, **conv)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1), **conv)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0), **conv)
        self.branch_pool = BasicConv2d(in_chans, 192, 1, **conv)
        self.out_chans = 320 + 2 * 384 + 2 * 384 + 192

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        b3d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3d = torch.cat([self.branch3x3dbl_3a(b3d), self.branch3x3dbl_3b(b3d)], 1)
        bp = self.branch_pool(_avg_pool_3x3(x))
        return torch.cat([b1, b3, b3d, bp], 1)  # (B, C, H, W) -> (B, 2048, H, W)


class InceptionAux(nn.Module):
    """Auxiliary head on the 17x17 grid: avgpool 5x5/3 -> 1x1 conv 128 -> 5x5 conv 768 -> fc.

    ``adaptive_pool=True`` pools to 5x5 whatever the grid (used by the small stem, whose grid
    is too small for the fixed pool).
    """

    def __init__(self, in_chans: int, num_classes: int, adaptive_pool: bool = False,
                 **conv) -> None:
        super().__init__()
        self.adaptive_pool = adaptive_pool
        self.conv0 = BasicConv2d(in_chans, 128, 1, **conv)
        self.conv1 = BasicConv2d(128, 768, 5, **conv)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (F.adaptive_avg_pool2d(x, 5) if self.adaptive_pool
             else F.avg_pool2d(x, kernel_size=5, stride=3))  # (B, 768, 17, 17) -> (B, 768, 5, 5)
        x = self.conv1(self.conv0(x))  # -> (B, 768, 1, 1)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# name, module class, extra arguments (Table 1 of the paper: 3 x A, B, 4 x C, D, 2 x E).
MIXED_BLOCKS: tuple[tuple[str, type[nn.Module], dict], ...] = (
    ("Mixed_5b", InceptionA, {"pool_features": 32}),
    ("Mixed_5c", InceptionA, {"pool_features": 64}),
    ("Mixed_5d", InceptionA, {"pool_features": 64}),
    ("Mixed_6a", InceptionB, {}),
    ("Mixed_6b", InceptionC, {"channels_7x7": 128}),
    ("Mixed_6c", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6d", InceptionC, {"channels_7x7": 160}),
    ("Mixed_6e", InceptionC, {"channels_7x7": 192}),
    ("Mixed_7a", InceptionD, {}),
    ("Mixed_7b", InceptionE, {}),
    ("Mixed_7c", InceptionE, {}),
)
AUX_AFTER = "Mixed_6e"
# Stem convs: name, out channels, kernel, stride, padding (ImageNet stem; 299 -> 35 grid).
STEM_CONVS = (
    ("Conv2d_1a_3x3", 32, 3, 2, 0),
    ("Conv2d_2a_3x3", 32, 3, 1, 0),
    ("Conv2d_2b_3x3", 64, 3, 1, 1),
    ("maxpool1", 0, 3, 2, 0),
    ("Conv2d_3b_1x1", 80, 1, 1, 0),
    ("Conv2d_4a_3x3", 192, 3, 1, 0),
    ("maxpool2", 0, 3, 2, 0),
)
STAGE_ENDS = ("Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c")


class Inception3(Classifier):
    #: Weight of the auxiliary loss (Google's TensorFlow Inception-v3 training code).
    aux_loss_weight = 0.4

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, stem: str = "imagenet",
                 aux_logits: bool = True, drop_rate: float = 0.5, transform_input: bool = False,
                 act: str = "relu", norm: str = "batch") -> None:
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
        # Smallest input whose grid survives every valid conv / pool; the fixed-size aux head
        # needs the full 17x17 grid, i.e. 299 pixels.
        self.min_input_size = 75 if stem == "imagenet" else 15
        self.min_input_size_aux = 299 if stem == "imagenet" else 15
        conv = dict(norm=norm, act=act)
        self._trunk: list[str] = []
        channels = in_chans
        for name, out_chans, kernel, stride, padding in STEM_CONVS:
            if name.startswith("maxpool"):
                keep = stem == "imagenet" or name == "maxpool2"
                self.add_module(name, nn.MaxPool2d(kernel, stride) if keep else nn.Identity())
            else:
                if stem == "small":
                    stride, padding = 1, kernel // 2
                self.add_module(name, BasicConv2d(channels, out_chans, kernel, stride, padding,
                                                  **conv))
                channels = out_chans
            self._trunk.append(name)
        for name, block_cls, extra in MIXED_BLOCKS:
            block = block_cls(channels, **extra, **conv)
            self.add_module(name, block)
            self._trunk.append(name)
            channels = block.out_chans
            if name == AUX_AFTER:
                self.AuxLogits = (InceptionAux(channels, num_classes,
                                               adaptive_pool=stem == "small", **conv)
                                  if aux_logits else None)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(drop_rate)
        self.num_features = channels
        self.fc = linear_or_identity(channels, num_classes)

        self.default_cfg = DefaultCfg(
            input_size=(in_chans, 299, 299) if stem == "imagenet" else (in_chans, 32, 32),
            num_classes=num_classes, classifier="fc", first_conv="Conv2d_1a_3x3.conv",
            **imagenet_stats(in_chans),
            family="inception_v3", paper=PAPER)
        self._init_weights()

    def _init_weights(self) -> None:
        # Truncated normal as in the TensorFlow original: std 0.1, 0.01 for the aux 5x5 conv
        # and 0.001 for the aux classifier.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.1, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.AuxLogits is not None:
            nn.init.trunc_normal_(self.AuxLogits.conv1.conv.weight, std=0.01, a=-2, b=2)
            nn.init.trunc_normal_(self.AuxLogits.fc.weight, std=0.001, a=-2, b=2)

    def _run_trunk(self, x: torch.Tensor, with_aux: bool,
                   taps: tuple[str, ...] = ()) -> tuple[torch.Tensor, list, list]:
        min_size = self.min_input_size_aux if with_aux else self.min_input_size
        if x.ndim != 4 or min(x.shape[-2:]) < min_size:
            raise ValueError(f"Inception-v3 needs (B, C, H, W) input with H, W >= {min_size}"
                             f"{' (aux head in training mode)' if with_aux else ''}, "
                             f"got {tuple(x.shape)}")
        if self.transform_input:
            x = transform_input(x)
        aux, outs = [], []
        for name in self._trunk:
            x = getattr(self, name)(x)
            if with_aux and name == AUX_AFTER:
                aux.append(self.AuxLogits(x))
            if name in taps:
                outs.append(x)
        return x, aux, outs

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run_trunk(x, with_aux=False)[0]  # (B, C, 299, 299) -> (B, 2048, 8, 8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(self.avgpool(x), 1)  # -> (B, 2048)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict:
        if self.training and self.aux_logits:
            x, aux, _ = self._run_trunk(x, with_aux=True)
            return {"logits": self.forward_head(x), "aux_logits": aux}
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """New ``fc`` (and aux ``fc``) for ``num_classes``; 0 also removes the aux head."""
        self.num_classes = num_classes
        self.fc = linear_or_identity(self.num_features, num_classes)
        if self.aux_logits:
            if num_classes > 0:
                self.AuxLogits.fc = nn.Linear(768, num_classes)
            else:
                self.AuxLogits = None
                self.aux_logits = False

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Ends of the stem (35x35 grid at 299) and of the 35, 17 and 8 grid stages."""
        return self._run_trunk(x, with_aux=False, taps=STAGE_ENDS)[2]


@register_model("inception_v3", family="inception_v3", paper=PAPER, model_cls=Inception3,
                heavy=True)
def inception_v3(**kwargs) -> Inception3:
    """Inception-v3, torchvision-compatible (27.2M params with the aux head, 23.8M without)."""
    return Inception3(**kwargs)
