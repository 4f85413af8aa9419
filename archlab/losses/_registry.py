"""The loss registry and the small contract every loss follows.

A loss is an ``nn.Module`` class registered by name with keyword-only options. Its entry's
``inputs`` metadata names what ``forward`` takes, so a task can check that it feeds the right
tensors (``LOSSES.entry("focal").meta["inputs"] == ("logits", "target")``). Options are checked
at construction: a wrong value raises ``ValueError`` naming the loss, the option and the valid
range, so a typo in a config fails before the first batch rather than as a NaN later.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import nn

from archlab.registry import Registry

LOSSES: Registry[type[nn.Module]] = Registry("loss")

REDUCTIONS = ("mean", "sum", "none")


def check_choice(loss: str, option: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{loss}: {option} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value  # type: ignore[return-value]


def check_number(loss: str, option: str, value: object, *, ge: float | None = None,
                 gt: float | None = None, le: float | None = None,
                 lt: float | None = None) -> float:
    """``value`` as a finite float inside the given bounds (bools are not numbers here)."""
    bounds = [f"{op} {b:g}" for op, b in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
              if b is not None]
    valid = f"a finite number {' and '.join(bounds)}" if bounds else "a finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{loss}: {option} must be {valid}, got {value!r}")
    v = float(value)
    if ((ge is not None and v < ge) or (gt is not None and v <= gt)
            or (le is not None and v > le) or (lt is not None and v >= lt)):
        raise ValueError(f"{loss}: {option} must be {valid}, got {value!r}")
    return v


def check_int(loss: str, option: str, value: object, *, ge: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < ge:
        raise ValueError(f"{loss}: {option} must be an integer >= {ge}, got {value!r}")
    return int(value)


def check_bool(loss: str, option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{loss}: {option} must be true or false, got {value!r}")
    return value


def class_vector(loss: str, option: str, value: object, *, ge: float = 0.0,
                 le: float | None = None) -> torch.Tensor:
    """A per-class option (weights, alphas) as a 1-d float tensor with entries in range."""
    t = torch.as_tensor(value, dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"{loss}: {option} must be a non-empty list with one number per class, "
                         f"got shape {tuple(t.shape)}")
    if not torch.isfinite(t).all() or (t < ge).any() or (le is not None and (t > le).any()):
        rng = f"in [{ge:g}, {le:g}]" if le is not None else f">= {ge:g}"
        raise ValueError(f"{loss}: every entry of {option} must be {rng}, got {t.tolist()}")
    return t


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction`` ("mean" | "sum" | "none") to an unreduced loss tensor."""
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
