"""Accuracy and top-k accuracy: the fraction of examples whose label is the (k) best guess.

``update(preds, target)``: ``preds`` are (..., C) scores (logits or probabilities) or (...)
class indices (accuracy only), ``target`` (...) class indices. Sequence outputs (B, T, C) with
targets (B, T) count every position; ``ignore_index`` skips padding.
"""

from __future__ import annotations

from typing import Sequence

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, class_scores


@METRICS.register("accuracy", inputs="scores")
class Accuracy(SummedStateMetric):
    """``{"acc": correct / count}``. State: ``correct``, ``count`` (int64)."""

    def __init__(self, ignore_index: int | None = None) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("correct", torch.zeros((), dtype=torch.int64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        if preds.shape == target.shape and not preds.is_floating_point():
            pred, true = preds.reshape(-1), target.reshape(-1)
            if self.ignore_index is not None:
                keep = true != self.ignore_index
                pred, true = pred[keep], true[keep]
        else:
            scores, true = class_scores(preds, target, self.ignore_index)
            pred = scores.argmax(-1)
        self.correct += (pred == true).sum()
        self.count += true.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("accuracy: compute() called before any update()")
        return {"acc": (self.correct.double() / self.count).item()}


@METRICS.register("topk_accuracy", inputs="scores")
class TopKAccuracy(SummedStateMetric):
    """``{"top1": ..., "top5": ...}``: the label is among the k highest scores.

    Ties at the k-th score are broken by ``torch.topk`` (by index), as in the ImageNet
    evaluation code. State: ``correct`` (len(topk),) and ``count`` (int64).
    """

    def __init__(self, topk: Sequence[int] = (1, 5), ignore_index: int | None = None) -> None:
        super().__init__()
        self.topk = tuple(int(k) for k in topk)
        if not self.topk or min(self.topk) < 1:
            raise ValueError(f"topk must be a non-empty list of positive ints, got {topk}")
        self.ignore_index = ignore_index
        self.add_state("correct", torch.zeros(len(self.topk), dtype=torch.int64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        scores, true = class_scores(preds, target, self.ignore_index)
        kmax = max(self.topk)
        if kmax > scores.shape[-1]:
            raise ValueError(f"topk={self.topk} needs at least {kmax} classes, "
                             f"scores have {scores.shape[-1]}")
        ranked = scores.topk(kmax, dim=-1).indices  # (N, kmax), best first
        hit = ranked == true[:, None]  # at most one True per row
        self.correct += torch.stack([hit[:, :k].sum() for k in self.topk])
        self.count += true.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("topk_accuracy: compute() called before any update()")
        frac = (self.correct.double() / self.count).tolist()
        return {f"top{k}": f for k, f in zip(self.topk, frac)}
