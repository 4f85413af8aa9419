"""Learning-rate schedules as closed forms of the optimizer step, with optional warmup.

Every schedule is a multiplier ``f(step)`` of each group's base lr, evaluated by ``LambdaLR``
once per optimizer step; being a pure function of the step, it resumes exactly from a
checkpoint. Lengths are given in epochs and converted with ``steps_per_epoch``; the schedule
runs on the steps after warmup (its step 0 is the first step after warmup).

The exception is ``plateau`` (reduce-on-plateau), which depends on validation results: it is a
:class:`ReduceOnPlateau` object whose plain-data ``__dict__`` is its state, so ``LambdaLR``'s
own ``state_dict`` saves and restores it (keep ``lr_lambdas`` in the saved scheduler state;
every other entry is ``None`` or a dict of numbers, loadable with ``weights_only=True``).
Feed it the monitored metric after each validation with :func:`step_plateau`.

    sched = build_schedule(opt, ScheduleConfig(name="cosine_restarts", restart_epochs=10),
                           epochs=70, steps_per_epoch=len(loader))
"""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Callable, Literal

import torch
from pydantic import Field, field_validator, model_validator

from archlab.config import config_dataclass, known_name
from archlab.registry import Registry

SCHEDULES: Registry[Callable[..., Callable[[int], float]]] = Registry("schedule")


@config_dataclass
class ScheduleConfig:
    name: str = "cosine"
    """constant | step | multistep | exponential | cosine | cosine_restarts | onecycle | cyclic |
    polynomial | plateau."""
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    """Warmup over this many epochs, then the schedule over the remaining steps."""
    warmup: Literal["linear", "exponential"] = "linear"
    """Warmup shape from lr/W to lr over W steps: linear, or exponential (geometric: the lr
    grows by the same factor W^(1/(W-1)) every step)."""
    min_lr_ratio: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """Lowest lr as a fraction of the base lr: the end of cosine and polynomial, the floor of
    every cosine_restarts cycle, the bottom of cyclic, the floor of plateau."""
    step_epochs: Annotated[float, Field(gt=0.0)] = 30.0
    """step: decay every this many epochs."""
    gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    """Multiplicative decay: step (per step_epochs), multistep (per milestone), exponential and
    cyclic exp_range (per epoch), plateau (per reduction)."""
    milestone_epochs: tuple[Annotated[float, Field(gt=0.0)], ...] = ()
    """multistep: epochs at which the lr is multiplied by gamma, increasing."""
    restart_epochs: Annotated[float, Field(gt=0.0)] = 10.0
    """cosine_restarts: length T_0 of the first cycle (Loshchilov & Hutter 2017)."""
    restart_mult: Annotated[int, Field(ge=1)] = 1
    """cosine_restarts: each cycle is this many times longer than the previous (T_mult)."""
    cyclic_mode: Literal["triangular", "triangular2", "exp_range"] = "triangular"
    """cyclic (Smith 2017): constant amplitude, amplitude halved every cycle, or amplitude
    times gamma per epoch."""
    cyclic_step_epochs: Annotated[float, Field(gt=0.0)] = 2.0
    """cyclic: half-cycle length (the paper's stepsize; it suggests 2-10 epochs)."""
    power: Annotated[float, Field(gt=0.0)] = 1.0
    """polynomial: exponent of (1 - t/T)."""
    pct_start: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    """onecycle: fraction of steps spent increasing the lr (Smith & Topin 2019)."""
    div_factor: Annotated[float, Field(ge=1.0)] = 25.0
    """onecycle: initial lr = lr / div_factor."""
    final_div_factor: Annotated[float, Field(ge=1.0)] = 1e4
    """onecycle: final lr = initial lr / final_div_factor."""
    plateau_monitor: str = "val.loss"
    """plateau: the validation metric fed to step_plateau after each validation."""
    plateau_mode: Literal["min", "max"] = "min"
    """plateau: whether the monitored metric should go down (loss) or up (accuracy)."""
    plateau_patience: Annotated[int, Field(ge=0)] = 10
    """plateau: validations without improvement tolerated before reducing the lr."""
    plateau_threshold: Annotated[float, Field(ge=0.0)] = 1e-4
    """plateau: minimum change that counts as an improvement."""
    plateau_threshold_mode: Literal["rel", "abs"] = "rel"
    """plateau: threshold relative to the best value, or absolute."""
    plateau_cooldown: Annotated[int, Field(ge=0)] = 0
    """plateau: validations to wait after a reduction before counting again."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(SCHEDULES, name)

    @model_validator(mode="after")
    def _per_schedule_rules(self) -> "ScheduleConfig":
        if self.name == "plateau" and self.gamma >= 1.0:
            raise ValueError(f"schedule 'plateau' reduces the lr by gamma, which must be < 1, "
                             f"got {self.gamma}")
        if self.name == "multistep":
            m = list(self.milestone_epochs)
            if not m:
                raise ValueError("schedule 'multistep' needs milestone_epochs, e.g. [30, 60, 80]")
            if m != sorted(m):
                raise ValueError(f"milestone_epochs must be increasing, got {m}")
        return self


def _cos_interp(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2


def _epochs_to_steps(epochs: float, steps_per_epoch: int) -> int:
    return max(1, round(epochs * steps_per_epoch))


@SCHEDULES.register("constant")
def constant(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    return lambda step: 1.0


@SCHEDULES.register("step")
def step_decay(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    every = _epochs_to_steps(cfg.step_epochs, steps_per_epoch)
    return lambda step: cfg.gamma ** (step // every)


@SCHEDULES.register("multistep")
def multistep(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """gamma ** (number of milestones reached), as torch's MultiStepLR."""
    milestones = [_epochs_to_steps(m, steps_per_epoch) for m in cfg.milestone_epochs]
    return lambda step: cfg.gamma ** bisect.bisect_right(milestones, step)


@SCHEDULES.register("exponential")
def exponential(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """gamma per epoch, applied smoothly per step: gamma ** (step / steps_per_epoch)."""
    return lambda step: cfg.gamma ** (step / steps_per_epoch)


@SCHEDULES.register("cosine")
def cosine(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """Loshchilov & Hutter 2017 without restarts: half a cosine from 1 to min_lr_ratio."""
    return lambda step: _cos_interp(1.0, cfg.min_lr_ratio, min(step, total_steps) / total_steps)


@SCHEDULES.register("cosine_restarts")
def cosine_restarts(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """SGDR (Loshchilov & Hutter 2017, eq. 5): cosine from 1 to min_lr_ratio over T_i steps,
    then a warm restart; T_0 = restart_epochs, T_{i+1} = restart_mult * T_i."""
    first = _epochs_to_steps(cfg.restart_epochs, steps_per_epoch)

    def f(step: int) -> float:
        t, period = step, first
        while t >= period:  # O(log step) for restart_mult > 1
            t, period = t - period, period * cfg.restart_mult
        return _cos_interp(1.0, cfg.min_lr_ratio, t / period)

    return f


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


@SCHEDULES.register("cyclic")
def cyclic(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """Cyclical learning rates (Smith 2017): a triangle between min_lr_ratio and 1 with
    half-period cyclic_step_epochs, starting at the bottom; the amplitude is constant
    (triangular), halves each cycle (triangular2) or decays by gamma per epoch (exp_range)."""
    half = _epochs_to_steps(cfg.cyclic_step_epochs, steps_per_epoch)
    low = cfg.min_lr_ratio

    def f(step: int) -> float:
        cycle = 1 + step // (2 * half)  # 1-based, as in the paper
        height = max(0.0, 1.0 - abs(step / half - 2 * cycle + 1))
        if cfg.cyclic_mode == "triangular2":
            height /= 2.0 ** (cycle - 1)
        elif cfg.cyclic_mode == "exp_range":
            height *= cfg.gamma ** (step / steps_per_epoch)
        return low + (1.0 - low) * height

    return f


@SCHEDULES.register("polynomial")
def polynomial(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """(1 - t/T) ** power from 1 to min_lr_ratio over the run (torch's PolynomialLR when
    min_lr_ratio = 0)."""
    low = cfg.min_lr_ratio
    return lambda step: low + (1 - low) * (1 - min(step, total_steps) / total_steps) ** cfg.power


def warmup_factor(step: int, warmup_steps: int, kind: str = "linear") -> float:
    """Warmup multiplier at ``step`` < ``warmup_steps``: 1/W at step 0, 1 at step W-1."""
    if kind == "linear":
        return (step + 1) / warmup_steps
    if kind == "exponential":
        return warmup_steps ** ((step + 1 - warmup_steps) / (warmup_steps - 1)) \
            if warmup_steps > 1 else 1.0
    raise ValueError(f"warmup must be 'linear' or 'exponential', got {kind!r}")


class WarmupSchedule:
    """Warmup over ``warmup_steps`` (``kind`` linear or exponential), then
    ``after(step - warmup_steps)``."""

    # ``after`` lives in a slot, not in __dict__: LambdaLR saves a callable object's __dict__
    # into checkpoints, which must stay plain data; the warmup itself is stateless.
    __slots__ = ("after", "__dict__")

    def __init__(self, after: Callable[[int], float], warmup_steps: int,
                 kind: str = "linear") -> None:
        if kind not in ("linear", "exponential"):
            raise ValueError(f"warmup must be 'linear' or 'exponential', got {kind!r}")
        self.after, self.warmup_steps, self.kind = after, warmup_steps, kind

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return warmup_factor(step, self.warmup_steps, self.kind)
        return self.after(step - self.warmup_steps)


class ReduceOnPlateau:
    """Reduce-on-plateau as an lr multiplier: ``scale`` (times the warmup factor during warmup)
    drops by ``factor`` after more than ``patience`` calls of :meth:`step_metric` without an
    improvement of ``threshold``, then waits ``cooldown`` calls; never below ``min_ratio``.
    Same rule as torch's ReduceLROnPlateau, but the lr stays a multiplier of LambdaLR, so
    warmup, per-group lr multipliers and checkpointing work as for every schedule. All
    attributes are plain numbers and strings: ``LambdaLR.state_dict()`` saves them."""

    def __init__(self, *, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_ratio: float = 0.0, warmup_steps: int = 0, warmup: str = "linear") -> None:
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError(f"mode must be 'min'/'max' and threshold_mode 'rel'/'abs', got "
                             f"{mode!r}, {threshold_mode!r}")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"plateau factor (schedule.gamma) must be in (0, 1), got {factor}")
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode, self.cooldown = threshold, threshold_mode, cooldown
        self.min_ratio, self.warmup_steps, self.warmup = min_ratio, warmup_steps, warmup
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad, self.cooldown_left, self.scale = 0, 0, 1.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return warmup_factor(step, self.warmup_steps, self.warmup) * self.scale
        return self.scale

    def is_better(self, value: float) -> bool:
        if self.mode == "min":
            bar = self.best * (1 - self.threshold) if self.threshold_mode == "rel" \
                else self.best - self.threshold
            return value < bar
        bar = self.best * (1 + self.threshold) if self.threshold_mode == "rel" \
            else self.best + self.threshold
        return value > bar

    def step_metric(self, value: float) -> bool:
        """Record one validation result; returns True if the lr was reduced."""
        value = float(value)
        if self.is_better(value):
            self.best, self.num_bad = value, 0
        else:
            self.num_bad += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.num_bad = 0
        if self.num_bad > self.patience:
            self.cooldown_left, self.num_bad = self.cooldown, 0
            new = max(self.scale * self.factor, self.min_ratio)
            if new < self.scale:
                self.scale = new
                return True
        return False


@SCHEDULES.register("plateau")
def plateau(cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int):
    """Reduce on plateau (gamma per reduction); driven by :func:`step_plateau`."""
    return ReduceOnPlateau(mode=cfg.plateau_mode, factor=cfg.gamma, patience=cfg.plateau_patience,
                           threshold=cfg.plateau_threshold,
                           threshold_mode=cfg.plateau_threshold_mode,
                           cooldown=cfg.plateau_cooldown, min_ratio=cfg.min_lr_ratio)


def step_plateau(scheduler: torch.optim.lr_scheduler.LambdaLR, value: float) -> bool:
    """Feed a validation metric to the scheduler's :class:`ReduceOnPlateau` and apply a
    reduction at once, so the next optimizer step already uses it (as torch's
    ReduceLROnPlateau). Returns True if the lr was reduced."""
    plateaus = {id(f): f for f in scheduler.lr_lambdas if isinstance(f, ReduceOnPlateau)}
    if not plateaus:
        raise ValueError("step_plateau needs a scheduler built with schedule.name=plateau")
    reduced = any([f.step_metric(value) for f in plateaus.values()])
    if reduced:
        groups = scheduler.optimizer.param_groups
        for group, base_lr, f in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * f(scheduler.last_epoch)
        scheduler._last_lr = [group["lr"] for group in groups]  # what get_last_lr() reports
    return reduced


def build_schedule(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, *, epochs: int,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = max(1, epochs * steps_per_epoch)
    warmup = min(total - 1, round(cfg.warmup_epochs * steps_per_epoch))
    f = SCHEDULES.get(cfg.name)(cfg, total - warmup, steps_per_epoch)
    if isinstance(f, ReduceOnPlateau):
        # warmup inside the object, so its state stays at lr_lambdas[i].__dict__
        f.warmup_steps, f.warmup = warmup, cfg.warmup
    elif warmup > 0:
        f = WarmupSchedule(f, warmup, cfg.warmup)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
