"""Evaluate a checkpoint on its own: rebuild the model from the config it carries."""

from __future__ import annotations

from pathlib import Path

import torch

from archlab.config.loading import build_config
from archlab.data.pipeline import build_loaders, load_dataset
from archlab.train.checkpoint_io import load_checkpoint
from archlab.train.evaluate import evaluate
from archlab.train.precision import resolve_precision
from archlab.train.task import TASKS, EvaluationTask


def evaluation_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The weights a checkpoint was evaluated with: the EMA average if EMA was on."""
    for key, state in checkpoint.get("trainer", {}).get("callbacks", {}).items():
        if key.endswith(":EMA") and state.get("shadow"):
            return state["shadow"]
    return checkpoint["model"]


def load_model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """(model with evaluation weights, its ExperimentConfig, the dataset bundle).

    The model's output is the run's class scores: for a metric-learning run its Linear head
    (trained only with ``ce_weight`` > 0, if at all) is replaced by the cosine similarity to
    the saved class centroids, which is what the run predicted and was scored with."""
    model, cfg, bundle, checkpoint = restore_checkpoint(path, device)
    if cfg.task.name == "metric_learning":
        from archlab.train.metric_learning_task import with_centroid_head

        model = with_centroid_head(model, checkpoint.get("trainer", {}).get("task", {}))
    return model, cfg, bundle


def restore_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """:func:`load_model_from_checkpoint` plus the checkpoint dict itself."""
    checkpoint = load_checkpoint(path)
    cfg = build_config(checkpoint["config"], f"config stored in {path}")
    bundle = load_dataset(cfg.data)
    model = cfg.model.build(num_classes=bundle.num_classes, in_chans=bundle.in_chans)
    model.load_state_dict(evaluation_state_dict(checkpoint))
    return model.to(device).eval(), cfg, bundle, checkpoint


def evaluation_task(model, cfg, checkpoint: dict):
    """What scores the checkpoint's model: a task whose predictions need state saved with the
    run (metric learning's class centroids) rebuilds itself with ``for_evaluation``; any other
    is an :class:`EvaluationTask` on the model's logits."""
    restore = getattr(TASKS.get(cfg.task.name), "for_evaluation", None)
    if restore is None:
        return EvaluationTask(model, cfg.task)
    return restore(model, cfg.task, checkpoint.get("trainer", {}).get("task", {}))


def evaluate_checkpoint(path: str | Path, *, split: str = "test", tta_flip: bool | None = None,
                        device: str = "cpu") -> dict[str, float]:
    model, cfg, bundle, checkpoint = restore_checkpoint(path, device)
    loaders = build_loaders(cfg.data, device=torch.device(device), seed=cfg.train.seed,
                            bundle=bundle)
    loader = loaders.test if split == "test" else loaders.val
    task = evaluation_task(model, cfg, checkpoint)
    flip = cfg.train.tta_flip if tta_flip is None else tta_flip
    return evaluate(task, loader, resolve_precision("fp32", torch.device(device)), tta_flip=flip,
                    prefix=split)
