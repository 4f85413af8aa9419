"""Precision, recall and F1 for single-label multi-class classification, from a confusion matrix.

Per class c, with tp/fp/fn counted over all examples seen:
precision = tp / (tp + fp), recall = tp / (tp + fn), F1 = 2 tp / (2 tp + fp + fn)
(the harmonic mean of the two; van Rijsbergen 1979).

Averages (the names sklearn uses):

* ``macro``: unweighted mean over all ``num_classes`` classes, including classes that never
  occur (they score 0), i.e. ``sklearn.metrics.precision_recall_fscore_support(...,
  labels=range(num_classes))``;
* ``micro``: the ratios of the summed counts; for single-label data all three equal accuracy;
* ``weighted``: mean weighted by each class's support (number of true examples).

Zero division: a ratio whose denominator is 0 (a class never predicted has no precision, a class
never present has no recall) is defined as 0, like sklearn's ``zero_division=0``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, class_labels
from archlab.metrics.confusion import confusion_counts

AVERAGES = ("macro", "micro", "weighted")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den with 0 where den == 0 (zero_division=0)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.zeros_like(num))


def precision_recall_f1(matrix: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-class float64 ``precision``, ``recall``, ``f1`` and int64 ``support`` from a
    (C, C) ``[true, pred]`` confusion matrix."""
    tp = matrix.diagonal()
    fp = matrix.sum(0) - tp  # predicted c, truly something else
    fn = matrix.sum(1) - tp  # truly c, predicted something else
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn), "support": tp + fn}


@METRICS.register("precision_recall_f1", inputs="scores")
class PrecisionRecallF1(SummedStateMetric):
    """``{"precision_macro", "recall_macro", "f1_macro", "precision_micro", ...}`` as floats, plus
    ``"precision_per_class"``, ``"recall_per_class"``, ``"f1_per_class"`` (C,) tensors when
    ``per_class=True``.

    ``update(preds, target)`` as for the confusion matrix. State: ``matrix`` (C, C) int64.
    """

    def __init__(self, num_classes: int, averages: Sequence[str] = ("macro", "micro"),
                 per_class: bool = False, ignore_index: int | None = None) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        unknown = [a for a in averages if a not in AVERAGES]
        if unknown:
            raise ValueError(f"unknown average {unknown}; choose from {AVERAGES}")
        self.num_classes, self.averages = num_classes, tuple(averages)
        self.per_class, self.ignore_index = per_class, ignore_index
        self.add_state("matrix", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        pred, true = class_labels(preds, target, self.num_classes, self.ignore_index)
        self.matrix += confusion_counts(pred, true, self.num_classes)

    def compute(self) -> dict[str, float | torch.Tensor]:
        stats = precision_recall_f1(self.matrix)
        support = stats["support"].double()
        out: dict[str, float | torch.Tensor] = {}
        for avg in self.averages:
            if avg == "micro":
                tp = self.matrix.diagonal().sum()
                # Single-label: every error is one fp (for the predicted class) and one fn.
                errors = self.matrix.sum() - tp
                micro = _ratio(tp, tp + errors).item()
                values = {"precision": micro, "recall": micro, "f1": micro}
            elif avg == "macro":
                values = {m: stats[m].mean().item() for m in ("precision", "recall", "f1")}
            else:
                total = support.sum()
                values = {m: (_ratio((stats[m] * support).sum(), total)).item()
                          for m in ("precision", "recall", "f1")}
            out.update({f"{m}_{avg}": v for m, v in values.items()})
        if self.per_class:
            out.update({f"{m}_per_class": stats[m] for m in ("precision", "recall", "f1")})
        return out
