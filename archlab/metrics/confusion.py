"""Confusion matrix: counts of (true class, predicted class) pairs.

``update(preds, target)``: ``preds`` (..., C) scores (argmax taken) or (...) class indices;
``target`` (...) class indices in ``[0, num_classes)``. Rows are true classes, columns predicted
classes, as in ``sklearn.metrics.confusion_matrix``.
"""

from __future__ import annotations

from typing import Optional

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, class_labels

NORMALIZE = (None, "true", "pred", "all")


def confusion_counts(pred: torch.Tensor, true: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N,), (N,) labels -> (C, C) int64 counts, ``[true, pred]``."""
    flat = torch.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return flat.view(num_classes, num_classes)


def normalize_confusion(matrix: torch.Tensor, normalize: Optional[str]) -> torch.Tensor:
    """sklearn's ``normalize``: rows (``"true"``), columns (``"pred"``) or everything (``"all"``)
    sum to 1; an all-zero row/column stays zero."""
    if normalize is None:
        return matrix
    m = matrix.double()
    if normalize == "true":
        total = m.sum(1, keepdim=True)
    elif normalize == "pred":
        total = m.sum(0, keepdim=True)
    else:
        total = m.sum()
    return torch.where(total > 0, m / total.clamp_min(1), torch.zeros_like(m))


@METRICS.register("confusion_matrix", inputs="scores")
class ConfusionMatrix(SummedStateMetric):
    """``{"confusion_matrix": (C, C) tensor}`` (int64 counts, or float64 when normalized).

    State: ``matrix`` (C, C) int64.
    """

    def __init__(self, num_classes: int, normalize: Optional[str] = None,
                 ignore_index: int | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, got {normalize!r}")
        self.num_classes, self.normalize, self.ignore_index = num_classes, normalize, ignore_index
        self.add_state("matrix", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        pred, true = class_labels(preds, target, self.num_classes, self.ignore_index)
        self.matrix += confusion_counts(pred, true, self.num_classes)

    def compute(self) -> dict[str, torch.Tensor]:
        return {"confusion_matrix": normalize_confusion(self.matrix.clone(), self.normalize)}
