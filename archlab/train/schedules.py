"""Learning-rate schedules as closed forms of the optimizer step, with optional linear warmup.

Every schedule is a multiplier ``f(step)`` of the base lr, evaluated by ``LambdaLR`` once per
optimizer step; being a pure function of the step, it resumes exactly from a checkpoint.
"""

from __future__ import annotations

import math
from typing import Annotated, Callable

import torch
from pydantic import Field, field_validator

from archlab.config import config_dataclass, known_name
from archlab.registry import Registry

SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry("schedule")


@config_dataclass
class ScheduleConfig:
    name: str = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    """Linear warmup from 0 over this many epochs, then the schedule over the remaining steps."""
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """cosine: final lr as a fraction of the base lr."""
    step_epochs: Annotated[float, Field(gt=0.0)] = 30.0
    """step: decay every this many epochs."""
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    """step: multiplicative decay."""
    pct_start: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    """onecycle: fraction of steps spent increasing the lr (Smith & Topin 2019)."""
    div_factor: Annotated[float, Field(ge=1.0)] = 25.0
    """onecycle: initial lr = lr / div_factor."""
    final_div_factor: Annotated[float, Field(ge=1.0)] = 1e4
    """onecycle: final lr = initial lr / final_div_factor."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(SCHEDULES, name)


def _cos_interp(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2


@SCHEDULES.register("constant")
def constant(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    return lambda step: 1.0


@SCHEDULES.register("step")
def step_decay(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    every = max(1, round(cfg.step_epochs * steps_per_epoch))
    return lambda step: cfg.gamma ** (step // every)


@SCHEDULES.register("cosine")
def cosine(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """Loshchilov & Hutter 2017 without restarts: half a cosine from 1 to min_lr_ratio."""
    return lambda step: _cos_interp(1.0, cfg.min_lr_ratio, min(step, total_steps) / total_steps)


@SCHEDULES.register("onecycle")
def onecycle(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """Cosine up from lr/div_factor to lr over pct_start, then cosine down to
    lr/(div_factor*final_div_factor); same phase boundaries as torch's OneCycleLR."""
    initial = 1.0 / cfg.div_factor
    final = initial / cfg.final_div_factor
    peak_step = float(cfg.pct_start * total_steps) - 1
    end_step = total_steps - 1

    def f(step: int) -> float:
        if step <= peak_step:
            return _cos_interp(initial, 1.0, step / peak_step if peak_step > 0 else 1.0)
        return _cos_interp(1.0, final, min(1.0, (step - peak_step) / (end_step - peak_step)))

    return f


class WarmupSchedule:
    """Linear warmup over ``warmup_steps``, then ``after(step - warmup_steps)``."""

    def __init__(self, after: Callable[[int], float], warmup_steps: int) -> None:
        self.after, self.warmup_steps = after, warmup_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.after(step - self.warmup_steps)


def build_schedule(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, epochs: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, round(cfg.warmup_epochs * steps_per_epoch))
    f = SCHEDULES.get(cfg.name)(cfg, total - warmup, steps_per_epoch)
    if warmup > 0:
        f = WarmupSchedule(f, warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
