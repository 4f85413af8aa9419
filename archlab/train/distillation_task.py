"""Knowledge distillation as a task: a frozen teacher from a finished run guides the student.

    task:
      name: distillation
      loss: {name: distillation, options: {temperature: 4.0, alpha: 0.9}}
      teacher: {run: runs/fashion_mnist/20261122-101500-ab12cd}

The teacher is rebuilt from the config its checkpoint carries, with the weights it was evaluated
with (the EMA average when EMA was on), frozen and kept in eval mode, and it sees exactly the
student's (augmented, possibly mixed) batch: Hinton et al. 2015 match the two distributions on
the transfer set the student trains on. Only the student is trained, saved and evaluated.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from archlab.train.task import TASKS, ClassificationTask, TaskConfig, TeacherConfig, unwrap


def teacher_checkpoint(cfg: TeacherConfig) -> Path:
    """The checkpoint file ``cfg`` designates; a clear error when there is none."""
    path = Path(cfg.run).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"task.teacher.run: {path} is neither a run directory nor a "
                                f"checkpoint file")
    names = ["best.ckpt", "last.ckpt"] if cfg.checkpoint == "best" else ["last.ckpt"]
    for name in names:
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    raise FileNotFoundError(f"task.teacher.run: {path} has no checkpoints/{names[0]}; was the "
                            f"teacher trained with callbacks.checkpoint.enabled=true?")


def load_teacher(cfg: TeacherConfig, device: torch.device) -> nn.Module:
    """The frozen teacher model in eval mode on ``device``."""
    from archlab.runs.evaluation import load_model_from_checkpoint

    path = teacher_checkpoint(cfg)
    teacher, teacher_cfg, _ = load_model_from_checkpoint(path, device)
    if teacher_cfg.task.name == "metric_learning":
        # Its class scores are cosine similarities in [-1, 1]: softened by a temperature they
        # are nearly uniform, so the KL term would teach the student almost nothing.
        raise ValueError(f"task.teacher.run: {path} is a task.name=metric_learning run; its "
                         f"scores are cosine similarities to class centroids, not logits. "
                         f"Distill from a classification (or distillation) run")
    teacher.requires_grad_(False)
    return teacher.eval()


@TASKS.register("distillation")
class DistillationTask(ClassificationTask):
    """Student logits, teacher logits and labels into the distillation loss."""

    loss_inputs = (("logits", "teacher_logits", "target"),)

    def __init__(self, model: nn.Module, cfg: TaskConfig, teacher: nn.Module | None = None
                 ) -> None:
        super().__init__(model, cfg)
        device = next(model.parameters()).device
        self.teacher = teacher if teacher is not None else load_teacher(cfg.teacher, device)
        student_classes = getattr(unwrap(model), "num_classes", None)
        teacher_classes = getattr(self.teacher, "num_classes", None)
        if student_classes != teacher_classes:
            raise ValueError(f"task.teacher predicts {teacher_classes} classes but the student "
                             f"{student_classes}; distill between models of the same dataset")
        self._teacher_layout_set = False

    @torch.no_grad()
    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()  # stays in eval even though the student switches to train
        if not self._teacher_layout_set:  # match the batches' memory format (NHWC for convs)
            if x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last):
                self.teacher.to(memory_format=torch.channels_last)
            self._teacher_layout_set = True
        out = self.teacher(x)
        return out["logits"] if isinstance(out, dict) else out

    def training_step(self, batch: tuple) -> dict[str, torch.Tensor]:
        x, y, target = self.prepare_batch(batch)
        out = self.model(x)
        logits = out["logits"] if isinstance(out, dict) else out
        teacher = self.teacher_logits(x)
        loss = self.criterion(logits, teacher, target)
        for aux in (out.get("aux_logits", ()) if isinstance(out, dict) else ()):
            loss = loss + self.aux_loss_weight * self.criterion(aux, teacher, target)
        result = {"loss": loss, "logits": logits, "target": y}
        if self.center is not None:  # task.center_loss on the student's penultimate features
            features, self._features = self._features, None
            center = self.center(features.flatten(1), y)
            result.update(loss=loss + self.cfg.center_loss.weight * center,
                          center_loss=center.detach())
        return result
