"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a normalized float batch.

Each image is mixed with its mirror in the batch (image b with image B-1-b, as timm does: the
loader has already shuffled, so no second permutation is needed) at one lambda per batch,
lambda ~ Beta(alpha, alpha). Mixup blends whole images, ``lam * x + (1 - lam) * x'``; CutMix
pastes a box of the partner covering about 1 - lambda of the area and, with ``correct_lam``,
sets lambda to the area actually kept after the box is clipped at the border. Targets become
soft, ``lam * y + (1 - lam) * y'``, with label smoothing folded in (Szegedy et al. 2016), so the
loss must take class probabilities (``F.cross_entropy(logits, soft_targets)``) and must not
smooth again. All randomness comes from the given ``torch.Generator``. Usage::

    mix = build_batch_mix({"name": "mixup", "mixup_alpha": 0.8, "cutmix_alpha": 1.0,
                           "label_smoothing": 0.1}, num_classes=10)
    x, soft = mix(x, y, generator)          # (B, C, H, W), (B, K)
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from archlab.registry import Registry

BATCH_MIXES: Registry[Callable[..., "Mixup"]] = Registry("batch mix")


@dataclass(frozen=True)
class MixParams:
    """One batch's draw: ``kind`` none | mixup | cutmix, the target weight ``lam`` of each image
    itself, and for cutmix the pasted box rows [top, bottom) x cols [left, right)."""

    kind: str
    lam: float
    box: tuple[int, int, int, int] | None = None


def smoothed_one_hot(target: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) class indices -> (B, K): (1 - smoothing) one-hot + smoothing / K."""
    off = smoothing / num_classes
    return F.one_hot(target.long(), num_classes).float() * (1.0 - smoothing) + off


def mix_targets(target: torch.Tensor, num_classes: int, lam: float,
                smoothing: float = 0.0) -> torch.Tensor:
    y = smoothed_one_hot(target, num_classes, smoothing)
    return lam * y + (1.0 - lam) * y.flip(0)


def cutmix_box(height: int, width: int, lam: float,
               generator: torch.Generator) -> tuple[int, int, int, int]:
    """Box of side sqrt(1 - lam) times the image's at a uniform centre, clipped to the image
    (Yun et al. 2019, eq. 2): (top, bottom, left, right)."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(0, height, (1,), generator=generator, device=generator.device))
    cx = int(torch.randint(0, width, (1,), generator=generator, device=generator.device))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


@BATCH_MIXES.register("mixup")
class Mixup:
    """Mixup and/or CutMix per batch with timm's semantics.

    With probability ``prob`` a batch is mixed (else targets are only smoothed); when both
    alphas are > 0 it is CutMix with probability ``switch_prob`` and Mixup otherwise; an alpha of
    0 turns that method off.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 1.0, cutmix_alpha: float = 0.0,
                 switch_prob: float = 0.5, prob: float = 1.0, label_smoothing: float = 0.0,
                 correct_lam: bool = True) -> None:
        if num_classes < 2:
            raise ValueError(f"mixup: num_classes must be >= 2, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0 or mixup_alpha == cutmix_alpha == 0:
            raise ValueError(f"mixup: mixup_alpha and cutmix_alpha must be >= 0 and not both 0, "
                             f"got {mixup_alpha} and {cutmix_alpha}")
        for name, v in (("switch_prob", switch_prob), ("prob", prob)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"mixup: {name} must be in [0, 1], got {v}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"mixup: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = num_classes
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        self.switch_prob, self.prob = switch_prob, prob
        self.label_smoothing, self.correct_lam = label_smoothing, correct_lam

    def draw(self, height: int, width: int, generator: torch.Generator) -> MixParams:
        """This batch's method, lambda and box, from the generator alone."""
        u_apply, u_switch = torch.rand(2, generator=generator, device=generator.device).tolist()
        if u_apply >= self.prob:
            return MixParams("none", 1.0)
        use_cutmix = self.mixup_alpha == 0 or (self.cutmix_alpha > 0
                                               and u_switch < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        # torch has no seeded Beta sampler; seed Python's from the generator instead.
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        lam = random.Random(seed).betavariate(alpha, alpha)
        if not use_cutmix:
            return MixParams("mixup", lam)
        box = cutmix_box(height, width, lam, generator)
        if self.correct_lam:
            top, bottom, left, right = box
            lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        return MixParams("cutmix", lam, box)

    def apply(self, x: torch.Tensor, target: torch.Tensor,
              params: MixParams) -> tuple[torch.Tensor, torch.Tensor]:
        soft = mix_targets(target, self.num_classes, params.lam, self.label_smoothing)
        if params.kind == "mixup":
            x = x * params.lam + x.flip(0) * (1.0 - params.lam)
        elif params.kind == "cutmix":
            top, bottom, left, right = params.box
            x = x.clone()
            x[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
        return x, soft.to(x.dtype)

    def __call__(self, x: torch.Tensor, target: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) float batch and (B,) class indices -> mixed batch and (B, K) targets."""
        if not x.is_floating_point() or x.dim() != 4:
            raise ValueError(f"mixup: expects the normalized float (B, C, H, W) batch, got "
                             f"{x.dtype} of shape {tuple(x.shape)}")
        if target.dim() != 1 or target.shape[0] != x.shape[0] or target.is_floating_point():
            raise ValueError(f"mixup: expects (B,) integer class targets for a batch of "
                             f"{x.shape[0]}, got {target.dtype} of shape {tuple(target.shape)}")
        return self.apply(x, target, self.draw(x.shape[-2], x.shape[-1], generator))


@BATCH_MIXES.register("cutmix")
def cutmix(num_classes: int, alpha: float = 1.0, prob: float = 1.0,
           label_smoothing: float = 0.0, correct_lam: bool = True) -> Mixup:
    """CutMix alone (Yun et al. 2019 use alpha = 1)."""
    return Mixup(num_classes, mixup_alpha=0.0, cutmix_alpha=alpha, prob=prob,
                 label_smoothing=label_smoothing, correct_lam=correct_lam)


def build_batch_mix(spec: Any, num_classes: int) -> Mixup:
    """A mix from its config entry (``"mixup"`` or ``{name: cutmix, alpha: 1.0}``)."""
    return BATCH_MIXES.build(spec, num_classes=num_classes)
