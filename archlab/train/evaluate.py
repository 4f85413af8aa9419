"""Evaluation pass: loss and accuracy summed over batches (and ranks), optional flip TTA."""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F

from archlab.train.distributed import DistInfo, all_reduce_sum
from archlab.train.precision import Precision


@torch.no_grad()
def evaluate(task, loader: Iterable, precision: Precision, *, tta_flip: bool = False,
             dist: DistInfo = DistInfo(), prefix: str = "val") -> dict[str, float]:
    """``{prefix}.loss`` (plain cross-entropy, no smoothing) and ``{prefix}.acc`` over the loader.

    ``tta_flip`` averages the softmax of each image and its left-right mirror.
    """
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
    model.train(was_training)
    all_reduce_sum(totals, dist)
    loss_sum, correct, count = totals.tolist()
    if count == 0:
        raise ValueError(f"{prefix} loader yielded no examples")
    return {f"{prefix}.loss": loss_sum / count, f"{prefix}.acc": correct / count}
