"""Cross-entropy on logits, for hard class indices and for soft (B, K) target distributions.

Soft targets are what mixup / cutmix produce (a convex mix of two one-hots); label smoothing
(Szegedy et al. 2016) mixes every target with the uniform distribution, q' = (1 - ε) q + ε / K.
For hard targets the value equals ``torch.nn.functional.cross_entropy`` with the same
``weight``, ``label_smoothing``, ``ignore_index`` and ``reduction``, including its weighted
mean, which divides by the summed weights of the target classes rather than by the batch size.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from archlab.losses._registry import (LOSSES, REDUCTIONS, check_choice, check_number,
                                      class_vector, reduce)


@LOSSES.register("cross_entropy", inputs=("logits", "target"))
class CrossEntropyLoss(nn.Module):
    """``loss = CrossEntropyLoss(label_smoothing=0.1)(logits, target)``.

    Options:
        label_smoothing: ε in [0, 1).
        weight: per-class weights w_k >= 0 (length K), or None.
        ignore_index: hard-target value whose positions contribute nothing (e.g. padding).
        reduction: "mean" | "sum" | "none".
    """

    def __init__(self, *, label_smoothing: float = 0.0,
                 weight: Optional[Sequence[float]] = None, ignore_index: int = -100,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.label_smoothing = check_number("cross_entropy", "label_smoothing", label_smoothing,
                                            ge=0.0, lt=1.0)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"cross_entropy: ignore_index must be an integer, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self.reduction = check_choice("cross_entropy", "reduction", reduction, REDUCTIONS)
        self.weight: Optional[torch.Tensor]
        self.register_buffer("weight", None if weight is None
                             else class_vector("cross_entropy", "weight", weight))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``logits`` against ``target``.

        Args:
            logits: (B, K) or (B, K, *) unnormalized class scores.
            target: (B,) / (B, *) integer class indices, or (B, K) / (B, K, *) float class
                probabilities (rows summing to 1).

        Returns:
            A scalar for "mean" / "sum"; (B,) or (B, *) per-position losses for "none".
        """
        if logits.ndim < 2:
            raise ValueError(f"cross_entropy: logits must be (B, K) or (B, K, *), "
                             f"got shape {tuple(logits.shape)}")
        k = logits.shape[1]
        logp = logits.log_softmax(dim=1)
        if self.weight is not None:
            if self.weight.numel() != k:
                raise ValueError(f"cross_entropy: weight has {self.weight.numel()} entries but "
                                 f"logits have K={k} classes")
            # (K,) -> (1, K, 1, ...) to broadcast over batch and spatial dims
            w = self.weight.to(logp.dtype).view(1, k, *([1] * (logits.ndim - 2)))
            weighted_logp = logp * w
        else:
            weighted_logp = logp
        eps = self.label_smoothing

        if target.is_floating_point():
            if target.shape != logits.shape:
                raise ValueError(f"cross_entropy: soft targets must have the logits' shape "
                                 f"{tuple(logits.shape)}, got {tuple(target.shape)}")
            q = target.to(logp.dtype)
            if eps > 0:
                q = q * (1 - eps) + eps / k
            return reduce(-(q * weighted_logp).sum(dim=1), self.reduction)  # (B, K, *) -> (B, *)

        expected = logits.shape[:1] + logits.shape[2:]
        if target.shape != expected:
            raise ValueError(f"cross_entropy: integer targets must have shape {tuple(expected)} "
                             f"(logits without the class dim), got {tuple(target.shape)}")
        keep = target != self.ignore_index
        index = torch.where(keep, target, torch.zeros_like(target)).long()
        nll = -logp.gather(1, index.unsqueeze(1)).squeeze(1)  # (B, *)
        # Per-position weight of the true class, zero where ignored: also the mean's denominator.
        w_y = (self.weight.to(logp.dtype)[index] if self.weight is not None
               else torch.ones_like(nll)) * keep
        loss = (1 - eps) * w_y * nll
        if eps > 0:
            # The uniform part of the smoothed target: ε / K * Σ_k w_k (-log p_k).
            loss = loss + (eps / k) * -weighted_logp.sum(dim=1) * keep
        if self.reduction == "mean":
            return loss.sum() / w_y.sum()
        return reduce(loss, self.reduction)
