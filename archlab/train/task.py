"""Tasks: model + loss -> a dict with ``loss`` (and ``logits``, ...).

The Trainer only reads ``out["loss"]`` (and hands the dict to callbacks), so classifiers,
autoencoders and language models all train in the same loop. A task is registered by name and
configured by its own :class:`TaskConfig` slice.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Optional, Protocol

import torch
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name
from archlab.losses.config import LossConfig
from archlab.registry import Registry


@config_dataclass
class TaskConfig:
    name: str = "classification"
    loss: LossConfig = field(default_factory=LossConfig)
    """The training loss, e.g. {name: cross_entropy, options: {label_smoothing: 0.1}}."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra evaluation metrics by name with their options, e.g.
    {topk_accuracy: {topk: [1, 5]}, precision_recall_f1: {}, ece: {}}; ``num_classes`` is
    filled in from the model's logits. Loss and accuracy are always reported."""
    mix: Optional[Any] = None
    """Batch mixing in training: "mixup", "cutmix" or {name: mixup, mixup_alpha: 0.8,
    cutmix_alpha: 1.0, switch_prob: 0.5, label_smoothing: 0.1}; targets become soft, so label
    smoothing then belongs here, not in the loss."""
    aux_loss_weight: Optional[Annotated[float, Field(ge=0.0)]] = None
    """Weight of auxiliary classifier losses; None uses the model's own ``aux_loss_weight``
    (GoogLeNet 0.3 as in the paper, Inception-v3 0.4)."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(TASKS, name)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from archlab.metrics import METRICS

        for name in metrics:
            known_name(METRICS, name)
            if METRICS.entry(name).meta.get("inputs") != "scores":
                raise ValueError(f"metric '{name}' needs {METRICS.entry(name).meta.get('inputs')}"
                                 f", not classifier scores; it cannot run in evaluation")
        return metrics

    def __post_init__(self) -> None:
        if self.mix is not None:
            from archlab.train.techniques import build_batch_mix

            build_batch_mix(self.mix, num_classes=2)  # names and options fail now
            if self.loss.options.get("label_smoothing"):
                raise ValueError("with task.mix, set label_smoothing in task.mix (it is folded "
                                 "into the soft targets), not in task.loss.options")


class Task(Protocol):
    model: nn.Module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        ...

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        ...


TASKS: Registry[type] = Registry("task")


@TASKS.register("classification")
class ClassificationTask:
    """A classification loss on logits (cross-entropy by default); models with auxiliary heads
    return ``{"logits": ..., "aux_logits": [...]}`` in training and add their weighted losses."""

    def __init__(self, model: nn.Module, cfg: TaskConfig) -> None:
        self.model, self.cfg = model, cfg
        self.criterion = cfg.loss.build()
        self.mix = None
        self.mix_generator: torch.Generator | None = None
        self.seed = 0
        inner = getattr(model, "module", model)  # DDP / compile wrappers
        inner = getattr(inner, "_orig_mod", inner)
        self.aux_loss_weight = (cfg.aux_loss_weight if cfg.aux_loss_weight is not None
                                else getattr(inner, "aux_loss_weight", 0.0))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, target)

    def set_epoch(self, epoch: int, seed: int = 0) -> None:
        """Reseed the mixing generator from (seed, epoch): an epoch is reproducible on resume."""
        self.seed = seed
        if self.cfg.mix is not None:
            from archlab.data.loader import epoch_seed

            self.mix_generator = torch.Generator().manual_seed(epoch_seed(seed + 2, epoch))

    def prepare_batch(self, batch: tuple) -> tuple:
        """(x, y) -> (x', y, target): mixing applied once per batch, so an optimizer that
        evaluates the same batch twice (SAM) sees the same mixed images and soft targets."""
        if len(batch) == 3:
            return batch
        x, y = batch
        if self.cfg.mix is None:
            return x, y, y
        if self.mix is None:
            from archlab.train.techniques import build_batch_mix

            self.mix = build_batch_mix(self.cfg.mix, num_classes=self._num_classes())
        if self.mix_generator is None:
            self.set_epoch(0, self.seed)
        x, target = self.mix(x, y, self.mix_generator)  # soft (B, K) targets
        return x, y, target

    def training_step(self, batch: tuple) -> dict[str, torch.Tensor]:
        x, y, target = self.prepare_batch(batch)
        out = self.model(x)
        if isinstance(out, dict):
            logits = out["logits"]
            loss = self.loss(logits, target)
            for aux in out.get("aux_logits", ()):
                loss = loss + self.aux_loss_weight * self.loss(aux, target)
        else:
            logits = out
            loss = self.loss(logits, target)
        return {"loss": loss, "logits": logits, "target": y}

    def _num_classes(self) -> int:
        inner = getattr(self.model, "module", self.model)
        return getattr(getattr(inner, "_orig_mod", inner), "num_classes")

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out


def build_task(model: nn.Module, cfg: TaskConfig):
    return TASKS.get(cfg.name)(model, cfg)
