"""Learned and random augmentation policies over the AutoAugment op set, batched.

- ``autoaugment`` (Cubuk et al. 2019): each image draws one of the 25 learned ImageNet
  sub-policies (two ops, each applied with its probability at its magnitude of 10 bins).
- ``randaugment`` (Cubuk et al. 2020): ``num_ops`` ops drawn uniformly per image, all at one
  magnitude ``magnitude`` in [0, num_bins - 1] (torchvision's 31-bin scale: M = 9 is the
  paper's ImageNet setting).
- ``trivialaugment`` (Müller & Hutter 2021, the "wide" space): one op per image at a uniformly
  drawn magnitude.

Each image gets its own ops and magnitudes (signed ops flip sign with probability 1/2), all
drawn from the generator; ops are applied per op type to the group of images that drew it
(:func:`~archlab.data.image_ops.apply_per_sample`). Magnitude ranges are torchvision's; the
solarize threshold runs from 256 (no-op) down to 0. Config::

    augment: [{name: randaugment, num_ops: 2, magnitude: 9}, flip]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from archlab.data.augment import AUGMENTS
from archlab.data.image_ops import apply_per_sample, check_images


@dataclass(frozen=True)
class OpRange:
    """Bin i of n holds ``center ± linspace(low, high, n)[i]`` (± only when ``signed``);
    ``per_side`` ranges are fractions of the image width (x ops) or height (y ops)."""

    low: float
    high: float
    signed: bool = False
    center: float = 0.0
    per_side: bool = False


_ENHANCE = dict(signed=True, center=1.0)  # factor 1 ± m
NO_MAGNITUDE = None

# Cubuk et al. 2019 / 2020 (torchvision's table); translate is 150/331 of the side, the
# fraction used at 331 px in the AutoAugment paper.
AUTOAUGMENT_SPACE: dict[str, OpRange | None] = {
    "identity": NO_MAGNITUDE,
    "shear_x": OpRange(0.0, 0.3, signed=True),
    "shear_y": OpRange(0.0, 0.3, signed=True),
    "translate_x": OpRange(0.0, 150 / 331, signed=True, per_side=True),
    "translate_y": OpRange(0.0, 150 / 331, signed=True, per_side=True),
    "rotate": OpRange(0.0, 30.0, signed=True),
    "brightness": OpRange(0.0, 0.9, **_ENHANCE),
    "color": OpRange(0.0, 0.9, **_ENHANCE),
    "contrast": OpRange(0.0, 0.9, **_ENHANCE),
    "sharpness": OpRange(0.0, 0.9, **_ENHANCE),
    "posterize": OpRange(8.0, 4.0),
    "solarize": OpRange(256.0, 0.0),
    "autocontrast": NO_MAGNITUDE,
    "equalize": NO_MAGNITUDE,
}

# Müller & Hutter 2021, Table 1 ("wide"): translate in absolute pixels.
TRIVIALAUGMENT_SPACE: dict[str, OpRange | None] = {
    **AUTOAUGMENT_SPACE,
    "shear_x": OpRange(0.0, 0.99, signed=True),
    "shear_y": OpRange(0.0, 0.99, signed=True),
    "translate_x": OpRange(0.0, 32.0, signed=True),
    "translate_y": OpRange(0.0, 32.0, signed=True),
    "rotate": OpRange(0.0, 135.0, signed=True),
    "brightness": OpRange(0.0, 0.99, **_ENHANCE),
    "color": OpRange(0.0, 0.99, **_ENHANCE),
    "contrast": OpRange(0.0, 0.99, **_ENHANCE),
    "sharpness": OpRange(0.0, 0.99, **_ENHANCE),
    "posterize": OpRange(8.0, 2.0),
}

# AutoAugment's ImageNet policy (Cubuk et al. 2019, appendix): 25 sub-policies of two
# (op, probability, magnitude bin of 10) steps; None = op without magnitude.
IMAGENET_POLICY: tuple[tuple[tuple[str, float, int | None], ...], ...] = (
    (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
    (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("equalize", 0.4, None), ("rotate", 0.8, 8)),
    (("solarize", 0.6, 3), ("equalize", 0.6, None)),
    (("posterize", 0.8, 5), ("equalize", 1.0, None)),
    (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
    (("equalize", 0.6, None), ("posterize", 0.4, 6)),
    (("rotate", 0.8, 8), ("color", 0.4, 0)),
    (("rotate", 0.4, 9), ("equalize", 0.6, None)),
    (("equalize", 0.0, None), ("equalize", 0.8, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("rotate", 0.8, 8), ("color", 1.0, 2)),
    (("color", 0.8, 8), ("solarize", 0.8, 7)),
    (("sharpness", 0.4, 7), ("invert", 0.6, None)),
    (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
    (("color", 0.4, 0), ("equalize", 0.6, None)),
    (("equalize", 0.4, None), ("solarize", 0.2, 4)),
    (("solarize", 0.6, 5), ("autocontrast", 0.6, None)),
    (("invert", 0.6, None), ("equalize", 1.0, None)),
    (("color", 0.6, 4), ("contrast", 1.0, 8)),
    (("equalize", 0.8, None), ("equalize", 0.6, None)),
)
AUTOAUGMENT_BINS = 10


def magnitude_table(space: dict[str, OpRange | None], num_bins: int, height: int,
                    width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(levels (num_ops, num_bins), center (num_ops,), signed (num_ops,)) for ``list(space)``."""
    levels, centers, signed = [], [], []
    for name, r in space.items():
        if r is None:
            levels.append(torch.zeros(num_bins))
            centers.append(0.0)
            signed.append(False)
            continue
        scale = (height if name.endswith("_y") else width) if r.per_side else 1.0
        levels.append(torch.linspace(r.low, r.high, num_bins, dtype=torch.float64) * scale)
        centers.append(r.center)
        signed.append(r.signed)
    return (torch.stack(levels).float(), torch.tensor(centers), torch.tensor(signed))


def _signed_values(levels: torch.Tensor, center: torch.Tensor, signed: torch.Tensor,
                   op: torch.Tensor, bins: torch.Tensor, generator: torch.Generator,
                   ) -> torch.Tensor:
    """Per-image parameter center ± level, the sign drawn for every image (used for signed ops)."""
    flip = torch.randint(0, 2, op.shape, generator=generator, device=op.device).bool()
    magnitude = levels[op.clamp(min=0), bins]
    sign = torch.where(signed[op.clamp(min=0)] & flip, -1.0, 1.0)
    return center[op.clamp(min=0)] + sign * magnitude


class _SpacePolicy:
    """Shared machinery: per-shape magnitude tables cached on the batch's device."""

    space: dict[str, OpRange | None]

    def __init__(self, num_bins: int) -> None:
        self.num_bins = num_bins
        self.ops = list(self.space)
        self._tables: dict[tuple, tuple[torch.Tensor, ...]] = {}

    def _table(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        key = (x.shape[-2], x.shape[-1], x.device)
        if key not in self._tables:
            self._tables[key] = tuple(t.to(x.device) for t in magnitude_table(
                self.space, self.num_bins, x.shape[-2], x.shape[-1]))
        return self._tables[key]


@AUGMENTS.register("randaugment")
class RandAugment(_SpacePolicy):
    """``num_ops`` ops per image, drawn uniformly from the 14, all at bin ``magnitude``."""

    space = AUTOAUGMENT_SPACE

    def __init__(self, num_ops: int = 2, magnitude: int = 9, num_bins: int = 31) -> None:
        if num_ops < 1:
            raise ValueError(f"randaugment: num_ops must be >= 1, got {num_ops}")
        if num_bins < 2:
            raise ValueError(f"randaugment: num_bins must be >= 2, got {num_bins}")
        if not 0 <= magnitude < num_bins:
            raise ValueError(f"randaugment: magnitude must be in [0, {num_bins - 1}] "
                             f"(num_bins={num_bins}), got {magnitude}")
        super().__init__(num_bins)
        self.num_ops, self.magnitude = num_ops, magnitude

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "randaugment")
        levels, center, signed = self._table(x)
        n = x.shape[0]
        bins = torch.full((n,), self.magnitude, device=x.device)
        for _ in range(self.num_ops):
            op = torch.randint(0, len(self.ops), (n,), generator=generator, device=x.device)
            value = _signed_values(levels, center, signed, op, bins, generator)
            x = apply_per_sample(x, op, value, self.ops)
        return x


@AUGMENTS.register("trivialaugment")
class TrivialAugment(_SpacePolicy):
    """One op per image, drawn uniformly, at a uniformly drawn magnitude bin (TrivialAugment
    Wide)."""

    space = TRIVIALAUGMENT_SPACE

    def __init__(self, num_bins: int = 31) -> None:
        if num_bins < 2:
            raise ValueError(f"trivialaugment: num_bins must be >= 2, got {num_bins}")
        super().__init__(num_bins)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "trivialaugment")
        levels, center, signed = self._table(x)
        n = x.shape[0]
        op = torch.randint(0, len(self.ops), (n,), generator=generator, device=x.device)
        bins = torch.randint(0, self.num_bins, (n,), generator=generator, device=x.device)
        value = _signed_values(levels, center, signed, op, bins, generator)
        return apply_per_sample(x, op, value, self.ops)


POLICIES = {"imagenet": IMAGENET_POLICY}


@AUGMENTS.register("autoaugment")
class AutoAugment(_SpacePolicy):
    """A learned policy (``policy: imagenet``): one sub-policy per image, each of its steps
    applied with its probability."""

    space = {**AUTOAUGMENT_SPACE, "invert": NO_MAGNITUDE}

    def __init__(self, policy: str = "imagenet") -> None:
        if policy not in POLICIES:
            raise ValueError(f"autoaugment: unknown policy {policy!r}; choose from "
                             f"{', '.join(POLICIES)}")
        super().__init__(AUTOAUGMENT_BINS)
        self.policy = policy
        steps = POLICIES[policy]
        index = {name: k for k, name in enumerate(self.ops)}
        # (num_subpolicies, 2) tables: op index, probability, magnitude bin
        self.op_table = torch.tensor([[index[op] for op, _, _ in s] for s in steps])
        self.prob_table = torch.tensor([[p for _, p, _ in s] for s in steps])
        self.bin_table = torch.tensor([[m or 0 for _, _, m in s] for s in steps])

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        check_images(x, "autoaugment")
        levels, center, signed = self._table(x)
        n, dev = x.shape[0], x.device
        sub = torch.randint(0, len(self.op_table), (n,), generator=generator, device=dev)
        ops, probs, bins = (t.to(dev)[sub] for t in (self.op_table, self.prob_table,
                                                     self.bin_table))  # (B, 2) each
        for step in range(ops.shape[1]):
            applied = torch.rand(n, generator=generator, device=dev) < probs[:, step]
            op = torch.where(applied, ops[:, step], -1)
            value = _signed_values(levels, center, signed, op, bins[:, step], generator)
            x = apply_per_sample(x, op, value, self.ops)
        return x
