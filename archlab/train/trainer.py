"""The training loop: fit -> epoch -> batch, readable top to bottom.

AMP, gradient accumulation, clipping and the LR schedule are inline because every run needs
them; everything optional (checkpoints, early stopping, EMA, logging, diagnostics) is a
:class:`~archlab.train.callbacks.base.Callback` on named hooks.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Annotated, Any, Callable, Literal, Optional, Sequence

import torch
from pydantic import Field
from torch import nn

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback
from archlab.train.distributed import DistInfo, all_reduce_mean_grads, all_reduce_sum
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
    tta_flip: bool = False
    """Evaluate on the average of each image's and its mirror's predictions."""
    log_every_steps: Annotated[int, Field(ge=1)] = 50


class NonFiniteLossError(RuntimeError):
    pass


class Trainer:
    def __init__(self, task, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, *, train_loader, val_loader,
                 cfg: TrainConfig, precision: Precision, callbacks: Sequence[Callback] = (),
                 dist: DistInfo = DistInfo(), model: nn.Module | None = None,
                 penalty: Callable[[], torch.Tensor] | None = None,
                 plateau_monitor: str = "val.loss") -> None:
        self.task, self.optimizer, self.scheduler = task, optimizer, scheduler
        self.model = model if model is not None else task.model  # unwrapped (no DDP)
        self.train_loader, self.val_loader = train_loader, val_loader
        self.cfg, self.precision, self.dist = cfg, precision, dist
        self.callbacks = [cb for cb in callbacks if cb.all_ranks or dist.is_main]
        self.penalty = penalty  # e.g. L1 / L2 terms added to every micro-batch's loss
        self.plateau_monitor = plateau_monitor
        self.sam = optimizer if isinstance(optimizer, SAM) else None
        # Trainable tensors the task owns outside the model (e.g. center-loss centers).
        self.task_params = list(task.extra_parameters()) if hasattr(task, "extra_parameters") \
            else []
        self.grad_norm_before_clip: torch.Tensor | None = None  # set when grad_clip_norm is on
        self.gradient_transforms = build_gradient_transforms(self.model, cfg, cfg.seed,
                                                             self.task_params)
        self.scaler = torch.amp.GradScaler(precision.device_type,
                                           enabled=precision.use_grad_scaler)
        self.epoch = 0  # epochs completed
        self.global_step = 0  # optimizer steps taken
        self.should_stop = False
        self.failure: str | None = None
        self.train_time_s = 0.0
        self.metrics: dict[str, float] = {}

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        self._call("on_fit_start")
        while self.epoch < self.cfg.epochs and not self.should_stop:
            self.train_loader.set_epoch(self.epoch)
            if hasattr(self.task, "set_epoch"):
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
            if isinstance(self.scheduler.lr_lambdas[0], ReduceOnPlateau):
                step_plateau(self.scheduler, self.metrics.get(self.plateau_monitor, math.nan))
            self._call("on_validation_end", self.metrics)
        self._call("on_fit_end")
        return self.metrics

    def train_epoch(self) -> dict[str, float]:
        self.task.model.train()
        totals = torch.zeros(3, dtype=torch.float64, device=self._device())  # loss, correct, n
        accumulate, n_batches = self.cfg.accumulate_steps, len(self.train_loader)
        window: list = []  # SAM re-runs the step's micro-batches at the perturbed weights
        for i, batch in enumerate(self.train_loader):
            boundary = (i + 1) % accumulate == 0 or i + 1 == n_batches
            if hasattr(self.task, "prepare_batch"):  # e.g. mixup, drawn once per batch
                batch = self.task.prepare_batch(batch)
            loss, out = self._backward(batch, accumulate, sync=boundary)
            if not torch.isfinite(loss):
                self.failure = self._non_finite_report(loss)
                self.should_stop = True
                break
            with torch.no_grad():
                y = out["target"]
                totals[0] += loss.detach().double() * y.shape[0]
                if "logits" in out and y.ndim == 1:
                    totals[1] += (out["logits"].argmax(-1) == y).sum()
                totals[2] += y.shape[0]
            if self.sam is not None:
                window.append(batch)
            if boundary:
                if self.sam is not None:
                    self._sam_second_pass(window, accumulate)
                    window = []
                self.optimizer_step()
                self._call("on_train_batch_end", out)
        all_reduce_sum(totals, self.dist)
        count = max(totals[2].item(), 1.0)
        return {"train.loss": totals[0].item() / count, "train.acc": totals[1].item() / count,
                "lr": self.optimizer.param_groups[0]["lr"]}

    def _backward(self, batch, accumulate: int, sync: bool):
        with self._maybe_no_sync(sync), self.precision.autocast():
            out = self.task.training_step(batch)
            loss = out["loss"]
            if self.penalty is not None:
                loss = loss + self.penalty()
        # Every micro-batch weighs 1/k of the step, so k batches of b == one batch of k*b.
        self.scaler.scale(loss / accumulate).backward()
        return loss, out

    def _sam_second_pass(self, window: list, accumulate: int) -> None:
        """SAM (Foret et al. 2021): climb to w + rho * g / ||g||, take the gradient there with the
        same micro-batches (BN statistics frozen), come back; optimizer_step then applies the
        base optimizer with that gradient. The perturbation is scale-invariant, so it needs no
        unscale_ (GradScaler allows one per step); an overflowed gradient skips it."""
        self.sam.first_step(zero_grad=True)
        with frozen_norm_stats(self.model):
            for j, batch in enumerate(window):
                self._backward(batch, accumulate, sync=j == len(window) - 1)
        self.sam.restore()

    def optimizer_step(self) -> None:
        if self.dist.enabled and self.task_params:  # DDP only averages the model's gradients
            all_reduce_mean_grads(self.task_params, self.dist)
        self.scaler.unscale_(self.optimizer)
        # Clipping, AGC, noise (as configured). Norm clipping returns the global norm it saw;
        # keep it (a tensor, no device sync) so diagnostics can see the pre-clip value.
        self.grad_norm_before_clip = None
        for transform in self.gradient_transforms:
            out = transform(self.global_step)
            if isinstance(out, torch.Tensor) and self.grad_norm_before_clip is None:
                self.grad_norm_before_clip = out
        self._call("on_before_optimizer_step")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.global_step += 1

    def validate(self) -> dict[str, float]:
        self._call("on_validation_start")
        return self.evaluate(self.val_loader, prefix="val")

    def evaluate(self, loader, prefix: str = "test") -> dict[str, float]:
        """Evaluate with the weights callbacks designate (e.g. the EMA average)."""
        with self.evaluation_weights():
            return evaluate(self.task, loader, self.precision, tta_flip=self.cfg.tta_flip,
                            dist=self.dist, prefix=prefix)

    def evaluation_weights(self) -> contextlib.ExitStack:
        """Context in which the model holds the weights to evaluate (EMA's average if on)."""
        stack = contextlib.ExitStack()
        for cb in self.callbacks:
            if hasattr(cb, "evaluation_weights"):
                stack.enter_context(cb.evaluation_weights(self))
        return stack

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "task": self.task.state_dict() if hasattr(self.task, "state_dict") else {},
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
        self.optimizer.load_state_dict(state["optimizer"])
        sched = state["scheduler"]
        n_lambdas = len(self.optimizer.param_groups)
        self.scheduler.load_state_dict({**sched, "lr_lambdas": sched.get("lr_lambdas",
                                                                         [None] * n_lambdas)})
        self.scaler.load_state_dict(state["scaler"])
        if hasattr(self.task, "load_state_dict"):
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
