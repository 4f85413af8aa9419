"""Classification: a loss on the model's logits, accuracy (and extra metrics) in evaluation.

    task:
      name: classification            # the default
      loss: {name: cross_entropy, options: {label_smoothing: 0.1}}
      mix: {name: mixup, mixup_alpha: 0.2}
      metrics: {topk_accuracy: {topk: [1, 5]}}
      tta_flip: true

Models with auxiliary heads (GoogLeNet, Inception-v3) return ``{"logits", "aux_logits"}`` in
training; their weighted losses join the main one. ``center_loss`` adds Wen et al.'s center
term on the penultimate features with the centers in their own optimizer group.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name
from archlab.losses.config import LossConfig
from archlab.metrics.accuracy import Accuracy
from archlab.metrics.base import Metric
from archlab.metrics.mean import MeanMetric
from archlab.tasks.base import TASKS, Batch, Task, unwrap


@config_dataclass
class CenterLossConfig:
    """Center loss next to the task's loss (Wen et al. 2016): L = L_task + weight · L_C, with the
    class centers learned in their own parameter group at lr × lr_multiplier."""
    weight: Annotated[float, Field(gt=0.0)] = 0.01
    """λ; Wen et al. use 0.003-0.01 for faces (their MNIST toy: 0.01-1)."""
    lr_multiplier: Annotated[float, Field(gt=0.0)] = 1.0
    """Centers' lr relative to optim.lr (the paper's separate center rate α)."""


def check_loss_inputs(task: str, loss: LossConfig, allowed: tuple[tuple[str, ...], ...]) -> None:
    """A task can feed only losses whose inputs it produces; say which ones fit."""
    if loss.inputs() in allowed:
        return
    from archlab.losses import LOSSES

    fits = [n for n in LOSSES if tuple(LOSSES.entry(n).meta.get("inputs", ())) in allowed]
    raise ValueError(f"task '{task}' cannot train with loss '{loss.name}' (it takes "
                     f"{', '.join(loss.inputs())}); losses for this task: {', '.join(fits)}")


def check_score_metrics(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Field-validator body: extra evaluation metrics must be registered and take class scores."""
    from archlab.metrics import METRICS

    for name in metrics:
        known_name(METRICS, name)
        if METRICS.entry(name).meta.get("inputs") != "scores":
            raise ValueError(f"metric '{name}' needs {METRICS.entry(name).meta.get('inputs')}, "
                             f"not classifier scores; it cannot run in evaluation")
    return metrics


def build_score_metrics(specs: dict[str, dict[str, Any]], num_classes: int) -> dict[str, Metric]:
    """The configured extra metrics; ``num_classes`` is passed to those that take it."""
    import inspect

    from archlab.metrics import METRICS, build_metric

    metrics = {}
    for name, options in specs.items():
        params = inspect.signature(METRICS.get(name)).parameters
        extra = {"num_classes": num_classes} if "num_classes" in params else {}
        metrics[name] = build_metric(name, **{**extra, **options})
    return metrics


def flip_averaged_scores(predict, x: torch.Tensor) -> torch.Tensor:
    """Log of the mean of the softmaxes of ``x`` and its left-right mirror (flip TTA)."""
    probs = (predict(x).float().softmax(-1) + predict(x.flip(-1)).float().softmax(-1)) / 2
    return probs.log()


@config_dataclass
class ClassificationConfig:
    name: Literal["classification"] = "classification"
    loss: LossConfig = field(default_factory=LossConfig)
    """The training loss, e.g. {name: cross_entropy, options: {label_smoothing: 0.1}}."""
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Extra evaluation metrics by name with their options, e.g.
    {topk_accuracy: {topk: [1, 5]}, precision_recall_f1: {}, ece: {}}; ``num_classes`` is
    filled in from the model. Loss and accuracy are always reported."""
    mix: Optional[Any] = None
    """Batch mixing in training: "mixup", "cutmix" or {name: mixup, mixup_alpha: 0.8,
    cutmix_alpha: 1.0, switch_prob: 0.5, label_smoothing: 0.1}; targets become soft, so label
    smoothing then belongs here, not in the loss."""
    aux_loss_weight: Optional[Annotated[float, Field(ge=0.0)]] = None
    """Weight of auxiliary classifier losses; None uses the model's own ``aux_loss_weight``
    (GoogLeNet 0.3 as in the paper, Inception-v3 0.4)."""
    center_loss: Optional[CenterLossConfig] = None
    """Add a center loss on the penultimate features, e.g. {weight: 0.01, lr_multiplier: 10}."""
    tta_flip: bool = False
    """Evaluate on the average of each image's and its mirror's predicted probabilities."""

    #: What the task trains on: the kind of dataset, and how many views of each example.
    DATA_KIND: ClassVar[str] = "images"
    DATA_VIEWS: ClassVar[tuple[int, ...]] = (1,)
    #: (inputs of a loss) this task can feed.
    LOSS_INPUTS: ClassVar[tuple[tuple[str, ...], ...]] = (("logits", "target"),)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return check_score_metrics(metrics)

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
        check_loss_inputs(self.name, self.loss, self.LOSS_INPUTS)


def penultimate_hook(inner: nn.Module, what: str) -> tuple[nn.Linear, list]:
    """The model's Linear classifier and a one-slot list a forward pre-hook fills with its input
    (the penultimate features) on every call, so the model still runs as a whole (DDP syncs)."""
    from archlab.layers.drop import DropConnect

    head = inner.get_classifier() if hasattr(inner, "get_classifier") else None
    if isinstance(head, DropConnect):  # model.drop_connect wraps the Linear; it still runs
        head = head.module
    if not isinstance(head, nn.Linear):
        raise ValueError(f"{what} needs a model whose get_classifier() is a Linear layer (its "
                         f"input is the feature); {type(inner).__name__} has "
                         f"{type(head).__name__}")
    slot: list = [None]

    def keep_features(module, args):
        slot[0] = args[0]
    head.register_forward_pre_hook(keep_features)
    return head, slot


@TASKS.register("classification", config=ClassificationConfig)
class ClassificationTask(Task):
    """A classification loss on logits; accuracy, loss and the configured metrics in evaluation
    (optionally on the mean of each image's and its mirror's probabilities)."""

    def __init__(self, model: nn.Module, cfg: ClassificationConfig) -> None:
        super().__init__(model, cfg)
        self.criterion = cfg.loss.build()
        self.mix = None
        self.mix_generator: torch.Generator | None = None
        self.seed = 0
        inner = unwrap(model)
        self.aux_loss_weight = (cfg.aux_loss_weight if cfg.aux_loss_weight is not None
                                else getattr(inner, "aux_loss_weight", 0.0))
        self.center = None
        if cfg.center_loss is not None:
            from archlab.losses.center import CenterLoss

            head, self._features = penultimate_hook(inner, "task.center_loss")
            self.center = CenterLoss(num_classes=head.out_features, feat_dim=head.in_features,
                                     center_lr_multiplier=cfg.center_loss.lr_multiplier
                                     ).to(head.weight.device)

    # ------------------------------------------------------------------ optimization
    def param_groups(self, phase: str, lr: float) -> list[dict]:
        """The center-loss centers: their own lr, no decay."""
        return [] if self.center is None else [self.center.param_group(lr)]

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Reseed the mixing generator from (seed, epoch): an epoch is reproducible on resume."""
        self.seed = seed
        if self.cfg.mix is not None:
            from archlab.data.loader import epoch_seed

            self.mix_generator = torch.Generator().manual_seed(epoch_seed(seed + 2, epoch))

    def prepare_batch(self, batch: Batch) -> Batch:
        """Adds ``"target"``: the labels, or with ``mix`` the soft targets of the mixed images
        (``"x"`` replaced), drawn once per batch."""
        if "target" in batch:
            return batch
        if self.cfg.mix is None:
            return {**batch, "target": batch["y"]}
        if self.mix is None:
            from archlab.train.techniques import build_batch_mix

            self.mix = build_batch_mix(self.cfg.mix, num_classes=unwrap(self.model).num_classes)
        if self.mix_generator is None:
            self.set_epoch(0, self.seed)
        x, target = self.mix(batch["x"], batch["y"], self.mix_generator)  # soft (B, K) targets
        return {**batch, "x": x, "target": target}

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.criterion(logits, batch["target"])

    def training_step(self, batch: Batch, phase: str = "main") -> dict[str, torch.Tensor]:
        batch = self.prepare_batch(batch)
        out = self.model(batch["x"])
        logits = out["logits"] if isinstance(out, dict) else out
        loss = self.loss(logits, batch)
        for aux in (out.get("aux_logits", ()) if isinstance(out, dict) else ()):
            loss = loss + self.aux_loss_weight * self.loss(aux, batch)
        y = batch["y"]
        result = {"loss": loss, "acc": (logits.detach().argmax(-1) == y).float().mean()}
        if self.center is not None:
            features, self._features[0] = self._features[0], None
            center = self.center(features.flatten(1), y)  # (B, D) penultimate features
            result.update(loss=loss + self.cfg.center_loss.weight * center,
                          center_loss=center.detach())
        return result

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (B, K): the logits."""
        out = self.model(x)
        return out["logits"] if isinstance(out, dict) else out

    def evaluation_metrics(self) -> dict[str, Metric]:
        num_classes = unwrap(self.model).num_classes
        return {"loss": MeanMetric("loss"), "acc": Accuracy(),
                **build_score_metrics(self.cfg.metrics, num_classes)}

    def validation_step(self, batch: Batch, metrics: dict[str, Metric]) -> None:
        """Loss is plain cross-entropy (no smoothing) so runs with different training losses
        compare; with ``tta_flip`` the scores are log of the mean of the two softmaxes."""
        x, y = batch["x"], batch["y"]
        logits = (flip_averaged_scores(self.predict, x) if self.cfg.tta_flip
                  else self.predict(x).float())
        metrics["loss"].update(F.cross_entropy(logits, y, reduction="none"))
        for name, metric in metrics.items():
            if name != "loss":
                metric.update(logits, y)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {} if self.center is None else {"center": self.center.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.center is not None and "center" in state:
            self.center.load_state_dict(state["center"])
