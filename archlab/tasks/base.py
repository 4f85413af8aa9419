"""The Task contract: what a kind of learning tells the training loop, and nothing more.

A task owns everything that differs between classification, distillation, metric learning,
language modelling, GANs, ...: its config section, what a training step computes, which
parameters each phase optimizes, how it is evaluated and what state it keeps. The Trainer owns
what is the same for all of them (AMP, accumulation, clipping, scheduling, SAM, callbacks,
checkpoints) and never asks which task it runs.

A new task is one file under ``archlab/tasks/``::

    @config_dataclass
    class MyConfig:
        name: Literal["my_task"] = "my_task"
        ...

    @TASKS.register("my_task", config=MyConfig)
    class MyTask(Task):
        def training_step(self, batch, phase):
            return {"loss": ...}

        def evaluation_metrics(self):
            return {"loss": MeanMetric("loss")}

        def validation_step(self, batch, metrics):
            metrics["loss"].update(...)

Batches are mappings (``{"x": ..., "y": ...}``; other tasks add keys such as
``"x_unlabeled"`` or ``"domain"``). Every member below has a safe default except
``training_step``, ``evaluation_metrics`` and ``validation_step``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

import torch
from torch import nn

from archlab.config import config_dataclass
from archlab.metrics.base import Metric
from archlab.registry import Registry

Batch = Mapping[str, torch.Tensor]

#: Task classes by name; ``meta["config"]`` is the task's config dataclass, whose ``name``
#: field is a ``Literal`` of the registered name (the ``task:`` section is a union of them).
TASKS: Registry[type] = Registry("task")


@config_dataclass
class RunReference:
    """A trained model a task builds on (a distillation teacher): a finished archlab run or one
    of its checkpoint files. The run's composition root loads it and hands the model in."""
    run: str
    """Run directory (runs/<experiment>/<run_id>) or a .ckpt file."""
    checkpoint: Literal["best", "last"] = "best"
    """Which checkpoint of the run; "best" uses last.ckpt when the run saved no best."""


@dataclass
class TrainedModel:
    """A trained model handed to a task (see :meth:`Task.required_models`), frozen by the task,
    with what its outputs are (``Task.output_kind`` of the run that trained it)."""
    model: nn.Module
    output_kind: str = "logits"
    source: str = ""


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


class Task:
    """Base class of every task. ``model`` may be wrapped (DDP, torch.compile): call it to run
    the forward pass (so DDP syncs gradients) and use :func:`unwrap` to reach its modules."""

    #: The optimization phases of one training step, in order; each gets its own optimizer,
    #: GradScaler and LR schedule. A GAN has ("discriminator", "generator").
    phases: ClassVar[tuple[str, ...]] = ("main",)

    #: What the model's output scores are, recorded in checkpoints so that other tools (a
    #: distillation teacher, calibration plots) know whether they may treat them as logits.
    output_kind: ClassVar[str] = "logits"

    #: The headline validation metric and its direction: what best checkpoints and early
    #: stopping watch unless the config names another.
    monitor: ClassVar[tuple[str, str]] = ("val.acc", "max")

    def __init__(self, model: nn.Module, cfg: Any) -> None:
        self.model, self.cfg = model, cfg

    @classmethod
    def required_models(cls, cfg: Any) -> dict[str, RunReference]:
        """Trained models this task needs, by constructor keyword (``{"teacher": ...}``); the
        caller loads each and passes it to the constructor. None by default."""
        return {}

    # ------------------------------------------------------------------ optimization
    def phase_module(self, phase: str) -> nn.Module:
        """The module whose parameters ``phase`` optimizes (with the optim config's weight-decay
        and lr-multiplier rules); the whole model by default."""
        return unwrap(self.model)

    def param_groups(self, phase: str, lr: float) -> list[dict]:
        """Extra optimizer groups for tensors the task owns outside the model (center-loss
        centers, a projection head), each a complete group with its own ``lr``."""
        return []

    def training_step(self, batch: Batch, phase: str) -> dict[str, torch.Tensor]:
        """The loss to minimize in ``phase`` plus scalars to log: ``{"loss": ..., "acc": ...}``.
        Every 0-dim entry is averaged over the epoch and logged as ``train.<key>``."""
        raise NotImplementedError

    def prepare_batch(self, batch: Batch) -> Batch:
        """Per-batch randomness drawn once (mixup): an optimizer that evaluates the same batch
        twice (SAM) sees the same prepared batch. Identity by default."""
        return batch

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Reseed the task's own randomness from (seed, epoch), so a resumed epoch is exact."""

    # ------------------------------------------------------------------ evaluation
    def evaluation_metrics(self) -> dict[str, Metric]:
        """Fresh metric accumulators for one evaluation pass."""
        raise NotImplementedError

    def validation_step(self, batch: Batch, metrics: dict[str, Metric]) -> None:
        """Update ``metrics`` with one batch (model already in eval mode, under no_grad)."""
        raise NotImplementedError

    def evaluation_results(self, metrics: dict[str, Metric]) -> dict[str, float]:
        """The reported numbers from the (synced) metrics: every scalar of every compute()."""
        out: dict[str, float] = {}
        for metric in metrics.values():
            out.update({k: float(v) for k, v in metric.compute().items()
                        if not isinstance(v, torch.Tensor) or v.ndim == 0})
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Task state that checkpoints keep (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state but the checkpoint holds "
                             f"task state {sorted(state)}; was it written by another task?")

    # ------------------------------------------------------------------ loaded models
    @classmethod
    def inference_model(cls, model: nn.Module, state: dict[str, Any]) -> nn.Module:
        """The model a checkpoint of this task stands for, given its saved task state: by
        default the model itself (metric learning swaps in its centroid head)."""
        return model


def build_task(model: nn.Module, cfg: Any, **models: nn.Module) -> Task:
    """The task ``cfg.name`` names, on ``model``; ``models`` are the other trained models the
    task needs (a distillation teacher), built by the caller."""
    return TASKS.get(cfg.name)(model, cfg, **models)
