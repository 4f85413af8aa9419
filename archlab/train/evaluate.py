"""Evaluation pass: loss and accuracy summed over batches (and ranks), optional flip TTA."""

from __future__ import annotations

import inspect
from typing import Any, Iterable

import torch
import torch.nn.functional as F

from archlab.train.distributed import DistInfo, all_reduce_sum
from archlab.train.precision import Precision


def build_eval_metrics(specs: dict[str, dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """The task's extra metrics; ``num_classes`` is passed to those that take it."""
    from archlab.metrics import METRICS, build_metric

    metrics = {}
    for name, options in specs.items():
        params = inspect.signature(METRICS.get(name)).parameters
        extra = {"num_classes": num_classes} if "num_classes" in params else {}
        metrics[name] = build_metric(name, **{**extra, **options})
    return metrics


@torch.no_grad()
def evaluate(task, loader: Iterable, precision: Precision, *, tta_flip: bool = False,
             dist: DistInfo = DistInfo(), prefix: str = "val") -> dict[str, float]:
    """``{prefix}.loss`` (plain cross-entropy, no smoothing), ``{prefix}.acc`` and the task's
    extra metrics (``task.cfg.metrics``; scalar results only) over the loader.

    ``tta_flip`` averages the softmax of each image and its left-right mirror.
    """
    specs = getattr(getattr(task, "cfg", None), "metrics", None) or {}
    extra = None
    model = task.model
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=next(model.parameters()).device)
    for x, y in loader:
        with precision.autocast():
            logits = task.predict(x).float()
            if tta_flip:
                probs = (logits.softmax(-1) + task.predict(x.flip(-1)).float().softmax(-1)) / 2
                logits = probs.log()
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += (logits.argmax(-1) == y).sum()
        totals[2] += y.numel()
        if specs:
            extra = extra or build_eval_metrics(specs, logits.shape[-1])
            for metric in extra.values():
                metric.update(logits, y)
    model.train(was_training)
    all_reduce_sum(totals, dist)
    loss_sum, correct, count = totals.tolist()
    if count == 0:
        raise ValueError(f"{prefix} loader yielded no examples")
    out = {f"{prefix}.loss": loss_sum / count, f"{prefix}.acc": correct / count}
    for metric in (extra or {}).values():
        metric.sync(dist)
        out.update({f"{prefix}.{k}": float(v) for k, v in metric.compute().items()
                    if not isinstance(v, torch.Tensor) or v.ndim == 0})
    return out
