"""Tasks: model + loss -> a dict with ``loss`` (and ``logits``, ...).

The Trainer only reads ``out["loss"]`` (and hands the dict to callbacks), so classifiers,
autoencoders and language models all train in the same loop. A task is registered by name and
configured by its own :class:`TaskConfig` slice.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal, Optional, Protocol

import torch
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name
from archlab.losses.config import LossConfig
from archlab.registry import Registry


@config_dataclass
class CenterLossConfig:
    """Center loss next to the task's loss (Wen et al. 2016): L = L_task + weight · L_C, with the
    class centers learned in their own parameter group at lr × lr_multiplier."""
    weight: Annotated[float, Field(gt=0.0)] = 0.01
    """λ; Wen et al. use 0.003-0.01 for faces (their MNIST toy: 0.01-1)."""
    lr_multiplier: Annotated[float, Field(gt=0.0)] = 1.0
    """Centers' lr relative to optim.lr (the paper's separate center rate α)."""


@config_dataclass
class TeacherConfig:
    """The teacher of a distillation task: a finished archlab run (or one of its checkpoints)."""
    run: str
    """Run directory (runs/<experiment>/<run_id>) or a .ckpt file."""
    checkpoint: Literal["best", "last"] = "best"
    """Which checkpoint of the run; "best" uses last.ckpt when the run saved no best."""


@config_dataclass
class MetricLearningConfig:
    """Options of task.name=metric_learning (archlab/train/metric_learning_task.py)."""
    ce_weight: Annotated[float, Field(ge=0.0)] = 0.0
    """Weight of a joint cross-entropy on the model's logits (0: the metric loss alone)."""
    projection_dim: Optional[Annotated[int, Field(gt=0)]] = None
    """Output size of a SimCLR projection head (Linear-ReLU-Linear) between the embedding and
    the loss (Chen et al. 2020 use 128); None feeds the loss the embedding itself."""
    centroid_momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    """EMA momentum of the per-class embedding centroids that predict() scores against."""


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
    center_loss: Optional[CenterLossConfig] = None
    """Add a center loss on the penultimate features, e.g. {weight: 0.01, lr_multiplier: 10}."""
    teacher: Optional[TeacherConfig] = None
    """distillation: the teacher run, e.g. {run: runs/fashion_mnist/20261122-...}."""
    metric_learning: Optional[MetricLearningConfig] = None
    """metric_learning options, e.g. {ce_weight: 0.1, projection_dim: 128}; None: defaults."""

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
            if self.center_loss is not None:
                raise ValueError("task.center_loss needs hard labels; it cannot be combined with "
                                 "task.mix (mixed images have no single class center)")
        task = TASKS.get(self.name)
        if self.loss.inputs() not in task.loss_inputs:
            from archlab.losses import LOSSES

            fits = [n for n in LOSSES if LOSSES.entry(n).meta.get("inputs") in task.loss_inputs]
            raise ValueError(f"task '{self.name}' cannot train with loss '{self.loss.name}' (it "
                             f"takes {', '.join(self.loss.inputs())}); losses for this task: "
                             f"{', '.join(fits)}")
        if (self.name == "distillation") != (self.teacher is not None):
            raise ValueError("task.teacher is required by, and only used by, "
                             "task.name=distillation")
        if self.metric_learning is not None and self.name != "metric_learning":
            raise ValueError("task.metric_learning options are only used by "
                             "task.name=metric_learning")
        if hasattr(task, "check_config"):  # the task's own cross-field rules
            task.check_config(self)


class Task(Protocol):
    model: nn.Module

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        ...

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        ...


TASKS: Registry[type] = Registry("task")


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside DDP (``.module``) and torch.compile (``._orig_mod``) wrappers."""
    inner = getattr(model, "module", model)
    return getattr(inner, "_orig_mod", inner)


@TASKS.register("classification")
class ClassificationTask:
    """A classification loss on logits (cross-entropy by default); models with auxiliary heads
    return ``{"logits": ..., "aux_logits": [...]}`` in training and add their weighted losses."""

    loss_inputs = (("logits", "target"),)  # the losses this task can feed

    def __init__(self, model: nn.Module, cfg: TaskConfig) -> None:
        self.model, self.cfg = model, cfg
        self.criterion = cfg.loss.build()
        self.mix = None
        self.mix_generator: torch.Generator | None = None
        self.seed = 0
        inner = unwrap(model)
        self.aux_loss_weight = (cfg.aux_loss_weight if cfg.aux_loss_weight is not None
                                else getattr(inner, "aux_loss_weight", 0.0))
        self.center = None
        if cfg.center_loss is not None:
            self._features: torch.Tensor | None = None
            self.center = self._attach_center_loss(inner, cfg.center_loss)

    def _attach_center_loss(self, inner: nn.Module, cfg: CenterLossConfig):
        """The centers live in the task; the penultimate features are the classifier's input,
        caught by a forward hook so the model is still called as a whole (DDP syncs it)."""
        from archlab.layers.drop import DropConnect
        from archlab.losses.center import CenterLoss

        head = inner.get_classifier() if hasattr(inner, "get_classifier") else None
        if isinstance(head, DropConnect):  # model.drop_connect wraps the Linear; it still runs
            head = head.module
        if not isinstance(head, nn.Linear):
            raise ValueError(f"task.center_loss needs a model whose get_classifier() is a Linear "
                             f"layer (its input is the feature); {type(inner).__name__} has "
                             f"{type(head).__name__}")

        def keep_features(module, args):
            self._features = args[0]
        head.register_forward_pre_hook(keep_features)
        center = CenterLoss(num_classes=head.out_features, feat_dim=head.in_features,
                            center_lr_multiplier=cfg.lr_multiplier)
        return center.to(head.weight.device)

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable tensors outside the model: the center-loss centers."""
        return [] if self.center is None else list(self.center.parameters())

    def param_groups(self, lr: float) -> list[dict]:
        """Optimizer groups for :meth:`extra_parameters` (centers: their own lr, no decay)."""
        return [] if self.center is None else [self.center.param_group(lr)]

    def state_dict(self) -> dict[str, Any]:
        return {} if self.center is None else {"center": self.center.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.center is not None and "center" in state:
            self.center.load_state_dict(state["center"])

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
        result = {"loss": loss, "logits": logits, "target": y}
        if self.center is not None:
            features, self._features = self._features, None
            center = self.center(features.flatten(1), y)  # (B, D) penultimate features
            result.update(loss=loss + self.cfg.center_loss.weight * center,
                          center_loss=center.detach())
        return result

    def _num_classes(self) -> int:
        return unwrap(self.model).num_classes

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, x)


def predict_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out["logits"] if isinstance(out, dict) else out


class EvaluationTask:
    """What evaluating a trained classifier needs from any task config: the model, its logits and
    the metric specs (``cfg.metrics``) — no loss, teacher or centers are built."""

    def __init__(self, model: nn.Module, cfg: TaskConfig) -> None:
        self.model, self.cfg = model, cfg

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return predict_logits(self.model, x)


def build_task(model: nn.Module, cfg: TaskConfig):
    return TASKS.get(cfg.name)(model, cfg)


# Tasks defined in their own modules register themselves on import.
from archlab.train import distillation_task  # noqa: E402,F401
from archlab.train import metric_learning_task  # noqa: E402,F401
