"""One evaluation pass: the task's metrics over a loader, summed over batches (and ranks)."""

from __future__ import annotations

from typing import Iterable

import torch

from archlab.distributed import DistInfo
from archlab.train.precision import Precision


@torch.no_grad()
def evaluate(task, loader: Iterable, precision: Precision, *, dist: DistInfo = DistInfo(),
             prefix: str = "val") -> dict[str, float]:
    """``{prefix}.<name>`` for every number the task reports (``task.evaluation_results``),
    with the model in eval mode; the metrics' states are summed over DDP ranks first."""
    model = task.model
    was_training = model.training
    model.eval()
    metrics = task.evaluation_metrics()
    try:
        for batch in loader:
            with precision.autocast():
                task.validation_step(batch, metrics)
    finally:
        model.train(was_training)
    for metric in metrics.values():
        metric.sync(dist)
    try:
        results = task.evaluation_results(metrics)
    except ValueError as e:  # e.g. a metric that saw nothing
        raise ValueError(f"{prefix} evaluation: {e}") from None
    return {f"{prefix}.{k}": v for k, v in results.items()}
