"""Knowledge distillation: a frozen teacher from a finished run guides the student.

    task:
      name: distillation
      loss: {name: distillation, options: {temperature: 4.0, alpha: 0.9}}
      teacher: {run: runs/fashion_mnist/20261122-101500-ab12cd}

``run_experiment`` loads the teacher (rebuilt from its checkpoint alone, with the weights it was
evaluated with: the EMA average when EMA was on) and hands it to the task, which keeps it frozen
and in eval mode. It sees exactly the student's (augmented, possibly mixed) batch: Hinton et al.
2015 match the two distributions on the transfer set the student trains on. Only the student is
trained, saved and evaluated; evaluation is classification's.
"""

from __future__ import annotations

from dataclasses import field
from typing import ClassVar, Literal

import torch
from torch import nn

from archlab.config import config_dataclass
from archlab.losses.config import LossConfig
from archlab.tasks.base import TASKS, Batch, RunReference, TrainedModel, unwrap
from archlab.tasks.classification import ClassificationConfig, ClassificationTask


@config_dataclass(kw_only=True)
class DistillationConfig(ClassificationConfig):
    name: Literal["distillation"] = "distillation"
    loss: LossConfig = field(default_factory=lambda: LossConfig(name="distillation"))
    """Soft-target loss on (student logits, teacher logits, target), e.g. {name: distillation,
    options: {temperature: 4.0, alpha: 0.9}}."""
    teacher: RunReference
    """The teacher run, e.g. {run: runs/fashion_mnist/20261122-...}."""

    LOSS_INPUTS: ClassVar[tuple[tuple[str, ...], ...]] = (("logits", "teacher_logits", "target"),)


@TASKS.register("distillation", config=DistillationConfig)
class DistillationTask(ClassificationTask):
    """Student logits, teacher logits and labels into the distillation loss. ``teacher`` may be
    None only to evaluate a trained student (evaluation needs no teacher)."""

    @classmethod
    def required_models(cls, cfg: DistillationConfig) -> dict[str, RunReference]:
        return {"teacher": cfg.teacher}

    def __init__(self, model: nn.Module, cfg: DistillationConfig,
                 teacher: TrainedModel | nn.Module | None = None) -> None:
        super().__init__(model, cfg)
        if isinstance(teacher, TrainedModel):
            if teacher.output_kind != "logits":
                # Cosine similarities in [-1, 1] softened by a temperature are nearly uniform,
                # so the KL term would teach the student almost nothing.
                raise ValueError(f"task.teacher.run: {teacher.source or cfg.teacher.run} scores "
                                 f"with {teacher.output_kind}, not logits; distill from a "
                                 f"classification (or distillation) run")
            teacher = teacher.model
        self.teacher = teacher
        if teacher is None:
            return
        student_classes = getattr(unwrap(model), "num_classes", None)
        teacher_classes = getattr(teacher, "num_classes", None)
        if student_classes != teacher_classes:
            raise ValueError(f"task.teacher predicts {teacher_classes} classes but the student "
                             f"{student_classes}; distill between models of the same dataset")
        teacher.requires_grad_(False)
        self._teacher_layout_set = False

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.teacher is None:
            raise RuntimeError("this distillation task was built without its teacher (for "
                               "evaluation); training needs task.teacher loaded")
        self.teacher.eval()  # stays in eval even though the student switches to train
        if not self._teacher_layout_set:  # match the batches' memory format (NHWC for convs)
            if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
                self.teacher.to(memory_format=torch.channels_last)
            self._teacher_layout_set = True
        out = self.teacher(x)
        return out["logits"] if isinstance(out, dict) else out

    def prepare_batch(self, batch: Batch) -> Batch:
        """Classification's (mixing) plus the teacher's logits on the very batch the student
        sees; computed once, so SAM's second pass reuses them."""
        batch = super().prepare_batch(batch)
        if "teacher_logits" not in batch:
            batch = {**batch, "teacher_logits": self.teacher_logits(batch["x"])}
        return batch

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.criterion(logits, batch["teacher_logits"], batch["target"])
