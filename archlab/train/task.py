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
        inner = getattr(model, "module", model)  # DDP / compile wrappers
        inner = getattr(inner, "_orig_mod", inner)
        self.aux_loss_weight = (cfg.aux_loss_weight if cfg.aux_loss_weight is not None
                                else getattr(inner, "aux_loss_weight", 0.0))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, target)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        out = self.model(x)
        if isinstance(out, dict):
            logits = out["logits"]
            loss = self.loss(logits, y)
            for aux in out.get("aux_logits", ()):
                loss = loss + self.aux_loss_weight * self.loss(aux, y)
        else:
            logits = out
            loss = self.loss(logits, y)
        return {"loss": loss, "logits": logits, "target": y}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out


def build_task(model: nn.Module, cfg: TaskConfig):
    return TASKS.get(cfg.name)(model, cfg)
