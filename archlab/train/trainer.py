"""The training loop: fit -> epoch -> batch -> phase, readable top to bottom.

AMP, gradient accumulation, clipping and the LR schedule are inline because every run needs
them, with one optimizer, GradScaler and schedule per phase of the task (one phase for most
tasks; a GAN has two). What a step computes and how a model is scored belong to the
:class:`~archlab.tasks.Task`; everything optional (checkpoints, early stopping, EMA, logging,
diagnostics) is a :class:`~archlab.train.callbacks.base.Callback` on named hooks.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal, Mapping, Optional, Sequence

import torch
from pydantic import Field
from torch import nn

from archlab.config import config_dataclass
from archlab.distributed import (DistInfo, all_reduce_mean_grads, all_reduce_sum,
                                 broadcast_buffers)
from archlab.train.callbacks.base import Callback
from archlab.train.evaluate import evaluate
from archlab.train.gradient_transforms import build_gradient_transforms
from archlab.train.optimizers import SAM, frozen_norm_stats
from archlab.train.precision import Precision
from archlab.train.reproducibility import rng_state, set_rng_state
from archlab.train.schedules import ReduceOnPlateau, step_plateau


@config_dataclass
class TrainConfig:
    epochs: Annotated[int, Field(ge=1)] = 10
    seed: int = 0
    deterministic: bool = False
    """Deterministic kernels (matters on CUDA; CPU runs are deterministic already)."""
    device: str = "auto"
    """auto | cpu | cuda | cuda:N | mps."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: Optional[bool] = None
    """NHWC memory format; None = on for models with 2-d convolutions."""
    accumulate_steps: Annotated[int, Field(ge=1)] = 1
    """Optimizer step every k batches (effective batch = k * data.batch_size)."""
    grad_clip_norm: Optional[Annotated[float, Field(gt=0.0)]] = None
    grad_clip_value: Optional[Annotated[float, Field(gt=0.0)]] = None
    grad_clip_agc: Optional[Annotated[float, Field(gt=0.0)]] = None
    """Adaptive gradient clipping factor λ (Brock et al. 2021): unit-wise ||G|| <= λ·||W||; the
    paper uses 0.01 at batch 4096 and larger λ for smaller batches. The classifier is exempt."""
    agc_eps: Annotated[float, Field(gt=0.0)] = 1e-3
    """AGC: floor on ||W|| so zero-initialized weights still move."""
    grad_noise_eta: Optional[Annotated[float, Field(gt=0.0)]] = None
    """Gradient noise N(0, η / (1 + t)^γ) added every step (Neelakantan et al. 2015: η in
    {0.01, 0.3, 1.0})."""
    grad_noise_gamma: Annotated[float, Field(ge=0.0)] = 0.55
    compile: bool = False
    """torch.compile the model."""
    log_every_steps: Annotated[int, Field(ge=1)] = 50


class NonFiniteLossError(RuntimeError):
    pass


@dataclass
class Phase:
    """What one phase of a training step owns: its optimizer, schedule, GradScaler, gradient
    transforms, and the trainable tensors it steps that live outside the model."""
    name: str
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    transforms: list = field(default_factory=list)
    task_params: list = field(default_factory=list)  # DDP does not average these; we do
    frozen: list = field(default_factory=list)  # other phases' parameters, frozen meanwhile

    @property
    def sam(self) -> SAM | None:
        return self.optimizer if isinstance(self.optimizer, SAM) else None


class Trainer:
    """``Trainer(task, optimizers, schedulers, ...)``: one optimizer and schedule per phase of
    the task (a mapping by phase name; a single optimizer / schedule for one-phase tasks)."""

    def __init__(self, task, optimizers: torch.optim.Optimizer | Mapping[str, Any],
                 schedulers: torch.optim.lr_scheduler.LRScheduler | Mapping[str, Any], *,
                 train_loader, val_loader, cfg: TrainConfig, precision: Precision,
                 callbacks: Sequence[Callback] = (), dist: DistInfo = DistInfo(),
                 model: nn.Module | None = None,
                 penalty: Callable[[], torch.Tensor] | None = None,
                 plateau_monitor: str = "val.loss") -> None:
        self.task = task
        self.model = model if model is not None else task.model  # unwrapped (no DDP)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.cfg, self.precision, self.dist = cfg, precision, dist
        self.callbacks = [cb for cb in callbacks if cb.all_ranks or dist.is_main]
        self.penalty = penalty  # e.g. L1 / L2 terms added to every micro-batch's loss
        self.plateau_monitor = plateau_monitor
        self.phases = self._build_phases(per_phase(task.phases, optimizers, "optimizer"),
                                         per_phase(task.phases, schedulers, "schedule"))
        self.grad_norm_before_clip: torch.Tensor | None = None  # set when grad_clip_norm is on
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken (one per batch boundary, all phases)
        self.should_stop = False
        self.failure: str | None = None
        self.train_time_s = 0.0
        self.metrics: dict[str, float] = {}

    def _build_phases(self, optimizers: dict, schedulers: dict) -> list[Phase]:
        model_params = {id(p) for p in self.model.parameters()}
        stepped = {name: [p for g in opt.param_groups for p in g["params"]]
                   for name, opt in optimizers.items()}
        phases = []
        for i, name in enumerate(self.task.phases):
            own = {id(p) for p in stepped[name]}
            task_params = [p for p in stepped[name] if id(p) not in model_params]
            module = self.task.phase_module(name)
            # Noise seeds differ per phase (phase 0 keeps the single-phase seed).
            transforms = build_gradient_transforms(module, self.cfg, self.cfg.seed + 1000 * i,
                                                   task_params)
            frozen = [p for other, params in stepped.items() if other != name
                      for p in params if id(p) not in own and p.requires_grad]
            phases.append(Phase(name, optimizers[name], schedulers[name],
                                torch.amp.GradScaler(self.precision.device_type,
                                                     enabled=self.precision.use_grad_scaler),
                                transforms, task_params, frozen))
        return phases

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The first phase's optimizer (the only one for most tasks)."""
        return self.phases[0].optimizer

    @property
    def scaler(self) -> torch.amp.GradScaler:
        return self.phases[0].scaler

    @scaler.setter
    def scaler(self, scaler: torch.amp.GradScaler) -> None:
        self.phases[0].scaler = scaler

    @property
    def sam(self) -> SAM | None:
        return self.phases[0].sam

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        self._call("on_fit_start")
        while self.epoch < self.cfg.epochs and not self.should_stop:
            self.train_loader.set_epoch(self.epoch)
            self.task.set_epoch(self.epoch, self.cfg.seed)
            self._call("on_train_epoch_start")
            start = time.perf_counter()
            train_metrics = self.train_epoch()
            self.train_time_s += time.perf_counter() - start
            if self.failure:
                break
            self.epoch += 1
            self._call("on_train_epoch_end", train_metrics)
            self.metrics = {**train_metrics, **self.validate()}
            for phase in self.phases:
                if isinstance(phase.scheduler.lr_lambdas[0], ReduceOnPlateau):
                    step_plateau(phase.scheduler,
                                 self.metrics.get(self.plateau_monitor, math.nan))
            self._call("on_validation_end", self.metrics)
        self._call("on_fit_end")
        return self.metrics

    def train_epoch(self) -> dict[str, float]:
        self.task.model.train()
        logged = EpochMeans(len(self.phases) > 1)
        accumulate, n_batches = self.cfg.accumulate_steps, len(self.train_loader)
        windows: dict[str, list] = {p.name: [] for p in self.phases}  # SAM re-runs these
        for i, batch in enumerate(self.train_loader):
            boundary = (i + 1) % accumulate == 0 or i + 1 == n_batches
            with self.precision.autocast():  # e.g. mixup or a teacher's logits, drawn once
                batch = self.task.prepare_batch(batch)
            for phase in self.phases:
                loss, out = self._backward(batch, phase, accumulate, sync=boundary)
                if not torch.isfinite(loss):
                    self.failure = self._non_finite_report(loss)
                    self.should_stop = True
                    return {}
                logged.add(phase.name, out)
                if phase.sam is not None:
                    windows[phase.name].append(batch)
                if boundary:
                    if phase.sam is not None:
                        self._sam_second_pass(phase, windows[phase.name], accumulate)
                        windows[phase.name] = []
                    self.optimizer_step(phase)
            if boundary:
                self.global_step += 1
                self._call("on_train_batch_end", out)
        metrics = logged.means(self.dist)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        for phase in self.phases[1:]:
            metrics[f"lr.{phase.name}"] = phase.optimizer.param_groups[0]["lr"]
        return metrics

    def _backward(self, batch, phase: Phase, accumulate: int, sync: bool):
        with self._maybe_no_sync(sync), self._frozen(phase), self.precision.autocast():
            out = self.task.training_step(batch, phase.name)
            loss = out["loss"]
            if self.penalty is not None:
                loss = loss + self.penalty()
        # Every micro-batch weighs 1/k of the step, so k batches of b == one batch of k*b.
        phase.scaler.scale(loss / accumulate).backward()
        return loss, out

    def _sam_second_pass(self, phase: Phase, window: list, accumulate: int) -> None:
        """SAM (Foret et al. 2021): climb to w + rho * g / ||g||, take the gradient there with the
        same micro-batches (BN statistics frozen), come back; optimizer_step then applies the
        base optimizer with that gradient. The perturbation is scale-invariant, so it needs no
        unscale_ (GradScaler allows one per step); an overflowed gradient skips it."""
        phase.sam.first_step(zero_grad=True)
        with frozen_norm_stats(self.model):
            for j, batch in enumerate(window):
                self._backward(batch, phase, accumulate, sync=j == len(window) - 1)
        phase.sam.restore()

    def optimizer_step(self, phase: Phase) -> None:
        if self.dist.enabled and phase.task_params:  # DDP only averages the model's gradients
            all_reduce_mean_grads(phase.task_params, self.dist)
        phase.scaler.unscale_(phase.optimizer)
        # Clipping, AGC, noise (as configured). Norm clipping returns the global norm it saw;
        # keep it (a tensor, no device sync) so diagnostics can see the pre-clip value.
        self.grad_norm_before_clip = None
        for transform in phase.transforms:
            out = transform(self.global_step)
            if isinstance(out, torch.Tensor) and self.grad_norm_before_clip is None:
                self.grad_norm_before_clip = out
        self._call("on_before_optimizer_step")
        phase.scaler.step(phase.optimizer)
        phase.scaler.update()
        phase.optimizer.zero_grad(set_to_none=True)
        phase.scheduler.step()

    def validate(self) -> dict[str, float]:
        self._call("on_validation_start")
        return self.evaluate(self.val_loader, prefix="val")

    def evaluate(self, loader, prefix: str = "test") -> dict[str, float]:
        """Evaluate with the weights callbacks designate (e.g. the EMA average)."""
        with self.evaluation_weights():
            broadcast_buffers(self.model, self.dist)  # one model on every rank
            return evaluate(self.task, loader, self.precision, dist=self.dist, prefix=prefix)

    def evaluation_weights(self) -> contextlib.ExitStack:
        """Context in which the model holds the weights to evaluate (EMA's average if on)."""
        stack = contextlib.ExitStack()
        for cb in self.callbacks:
            stack.enter_context(cb.evaluation_weights(self))
        return stack

    def evaluation_state(self) -> tuple[str, dict | None]:
        """("raw", None) when evaluation uses the model's own weights, else (kind, weights)."""
        for cb in self.callbacks:
            state = cb.evaluation_state()
            if state is not None:
                return state
        return "raw", None

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizers": {p.name: p.optimizer.state_dict() for p in self.phases},
            "schedulers": {p.name: p.scheduler.state_dict() for p in self.phases},
            "scalers": {p.name: p.scaler.state_dict() for p in self.phases},
            "task": self.task.state_dict(),
            "callbacks": {self._cb_key(i, cb): cb.state_dict() for i, cb in
                          enumerate(self.callbacks)},
            "epoch": self.epoch,
            "global_step": self.global_step,
            "train_time_s": self.train_time_s,
            "metrics": self.metrics,
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for p in self.phases:
            p.optimizer.load_state_dict(state["optimizers"][p.name])
            sched = state["schedulers"][p.name]
            n_lambdas = len(p.optimizer.param_groups)
            p.scheduler.load_state_dict({**sched, "lr_lambdas": sched.get("lr_lambdas",
                                                                          [None] * n_lambdas)})
            p.scaler.load_state_dict(state["scalers"][p.name])
        self.task.load_state_dict(state.get("task", {}))
        for i, cb in enumerate(self.callbacks):
            cb.load_state_dict(state["callbacks"].get(self._cb_key(i, cb), {}))
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.train_time_s, self.metrics = state["train_time_s"], dict(state["metrics"])
        set_rng_state(state["rng"])

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _cb_key(i: int, cb: Callback) -> str:
        return f"{i}:{type(cb).__name__}"

    def _call(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @contextlib.contextmanager
    def _frozen(self, phase: Phase):
        """Other phases' parameters take no gradient while this phase runs (a generator's
        loss must not add into the discriminator's accumulated gradient)."""
        for p in phase.frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in phase.frozen:
                p.requires_grad_(True)

    def _maybe_no_sync(self, boundary: bool):
        model = self.task.model
        if not boundary and hasattr(model, "no_sync"):
            return model.no_sync()  # DDP: skip the gradient all-reduce until the last micro-batch
        return contextlib.nullcontext()

    def _non_finite_report(self, loss: torch.Tensor) -> str:
        bad_params = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        bad_grads = [n for n, p in self.model.named_parameters()
                     if p.grad is not None and not torch.isfinite(p.grad).all()]
        grads = [p.grad.detach().float().norm() for p in self.model.parameters()
                 if p.grad is not None]
        grad_norm = torch.stack(grads).norm().item() if grads else math.nan
        lr = self.optimizer.param_groups[0]["lr"]
        return (f"non-finite loss ({loss.item()}) at epoch {self.epoch + 1}, optimizer step "
                f"{self.global_step}, lr {lr:.4g}, gradient norm {grad_norm:.4g}; non-finite "
                f"parameters: {bad_params[:10] or 'none'}; non-finite gradients: "
                f"{bad_grads[:10] or 'none'}. Training stopped; the last good checkpoint is "
                f"kept. Try a lower optim.lr or train.grad_clip_norm.")


def per_phase(phases: Sequence[str], given: Any, what: str) -> dict[str, Any]:
    """``given`` as a {phase: item} dict: a single item serves a one-phase task."""
    if not isinstance(given, Mapping):
        if len(phases) != 1:
            raise ValueError(f"this task has phases {list(phases)}: give one {what} per phase "
                             f"as a mapping")
        return {phases[0]: given}
    if set(given) != set(phases):
        raise ValueError(f"one {what} per phase {list(phases)} is needed, got {sorted(given)}")
    return dict(given)


class EpochMeans:
    """Per-batch scalars of the training steps averaged over the epoch (and DDP ranks):
    ``train.<key>``, or ``train.<phase>.<key>`` when the task has several phases. Sums stay
    on the device (no host sync per step)."""

    def __init__(self, by_phase: bool) -> None:
        self.by_phase = by_phase
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, phase: str, out: dict[str, torch.Tensor]) -> None:
        for key, value in out.items():
            if not isinstance(value, torch.Tensor) or value.ndim != 0:
                continue
            name = f"train.{phase}.{key}" if self.by_phase else f"train.{key}"
            total = self.sums.get(name)
            value = value.detach().double()
            self.sums[name] = value if total is None else total + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def means(self, dist: DistInfo) -> dict[str, float]:
        if not self.sums:
            return {}
        names = sorted(self.sums)
        packed = torch.stack([self.sums[n] for n in names])
        all_reduce_sum(packed, dist)
        return {n: v / (self.counts[n] * dist.world_size)
                for n, v in zip(names, packed.tolist())}
