"""Batched data augmentation: whole batches on the training device, no per-sample Python.

Each augmentation is a registered callable ``aug(x, generator) -> x`` over uint8 or float
(B, C, H, W) tensors, drawing every random number from the given ``torch.Generator`` so an epoch
is a pure function of its seed (which is what makes exact resume possible). Configs list them::

    augment: [flip, {name: random_crop, padding: 2}]
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import torch
import torch.nn.functional as F

from archlab.registry import Registry


class BatchAugment(Protocol):
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


AUGMENTS: Registry[Callable[..., BatchAugment]] = Registry("augmentation")


def _uniform_int(low: int, high: int, n: int, generator: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """n integers uniform in [low, high]."""
    return torch.randint(low, high + 1, (n,), generator=generator, device=device)


def shift_batch(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, pad: int,
                padding_mode: str = "constant") -> torch.Tensor:
    """Shift every image b by (dy[b], dx[b]) pixels, |shift| <= pad, filling from the padding.

    Equivalent to padding by ``pad`` and cropping an (H, W) window at offset
    (pad + dy, pad + dx), done for the whole batch with one gather.
    """
    b, c, h, w = x.shape
    if padding_mode == "constant":
        xp = F.pad(x, (pad, pad, pad, pad))
    else:  # reflect/replicate need a float tensor in F.pad
        xp = F.pad(x.float(), (pad, pad, pad, pad), mode=padding_mode).to(x.dtype)
    rows = (pad + dy)[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = (pad + dx)[:, None] + torch.arange(w, device=x.device)  # (B, W)
    # One gather over the flattened padded plane: index (B, 1, H*W) shared by all channels.
    index = (rows[:, :, None] * xp.shape[-1] + cols[:, None, :]).flatten(1)[:, None, :]
    out = xp.flatten(2).gather(2, index.expand(b, c, h * w))
    return out.view(b, c, h, w)


@AUGMENTS.register("flip")
class HorizontalFlip:
    """Mirror each image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip: p must be in [0, 1], got {p}")
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = torch.nonzero(torch.rand(x.shape[0], generator=generator, device=x.device)
                               < self.p).flatten()
        # Copying only the chosen images is ~2x cheaper than a where() over the whole batch.
        return x.index_copy(0, chosen, x.index_select(0, chosen).flip(-1))


@AUGMENTS.register("random_crop")
class RandomCrop:
    """Pad by ``padding`` pixels and crop back to the original size at a random offset."""

    def __init__(self, padding: int = 2, padding_mode: str = "constant") -> None:
        if padding < 1:
            raise ValueError(f"random_crop: padding must be >= 1, got {padding}")
        if padding_mode not in ("constant", "reflect", "replicate"):
            raise ValueError(f"random_crop: padding_mode must be constant, reflect or replicate, "
                             f"got {padding_mode!r}")
        self.padding, self.padding_mode = padding, padding_mode

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, p = x.shape[0], self.padding
        dy = _uniform_int(-p, p, n, generator, x.device)
        dx = _uniform_int(-p, p, n, generator, x.device)
        return shift_batch(x, dy, dx, p, self.padding_mode)


@AUGMENTS.register("translate")
class RandomTranslate:
    """Shift by up to ``max_fraction`` of the image size in each axis, filling with zeros."""

    def __init__(self, max_fraction: float = 0.1) -> None:
        if not 0.0 < max_fraction < 1.0:
            raise ValueError(f"translate: max_fraction must be in (0, 1), got {max_fraction}")
        self.max_fraction = max_fraction

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        py, px = max(1, round(h * self.max_fraction)), max(1, round(w * self.max_fraction))
        dy = _uniform_int(-py, py, n, generator, x.device)
        dx = _uniform_int(-px, px, n, generator, x.device)
        return shift_batch(x, dy, dx, max(py, px))


@AUGMENTS.register("cutout")
class Cutout:
    """Zero a ``size`` x ``size`` square at a uniformly random centre (DeVries & Taylor 2017);
    squares may extend past the border, as in the paper. Applied with probability ``p``."""

    def __init__(self, size: int = 8, p: float = 1.0) -> None:
        if size < 1:
            raise ValueError(f"cutout: size must be >= 1, got {size}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"cutout: p must be in [0, 1], got {p}")
        self.size, self.p = size, p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        cy = _uniform_int(0, h - 1, n, generator, x.device)[:, None, None]
        cx = _uniform_int(0, w - 1, n, generator, x.device)[:, None, None]
        apply = (torch.rand(n, generator=generator, device=x.device) < self.p)[:, None, None]
        rows = torch.arange(h, device=x.device)[None, :, None]
        cols = torch.arange(w, device=x.device)[None, None, :]
        lo = self.size // 2  # the square spans [c - lo, c - lo + size)
        inside = ((rows >= cy - lo) & (rows < cy - lo + self.size) &
                  (cols >= cx - lo) & (cols < cx - lo + self.size) & apply)  # (B, H, W)
        # Multiplying by the keep-mask is ~10x cheaper than masked_fill on uint8 here.
        return x * (~inside[:, None]).to(x.dtype)


AugmentSpec = Any  # "flip" or {"name": "random_crop", "padding": 2}


def build_augment(spec: AugmentSpec) -> BatchAugment:
    """One augmentation from its config entry; bad names and options fail here, at config time."""
    return AUGMENTS.build(spec)
