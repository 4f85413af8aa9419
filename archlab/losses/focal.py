"""Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5).

FL(p_t) = -α_t (1 - p_t)^γ log p_t, where p_t is the predicted probability of the true
outcome. The factor (1 - p_t)^γ shrinks the loss of well-classified examples so training
concentrates on hard ones; with γ = 0 and no α it is exactly cross-entropy ("multiclass",
softmax over classes) or binary cross-entropy with logits ("binary", one sigmoid per logit).
"""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from archlab.losses._registry import (LOSSES, REDUCTIONS, check_choice, check_number,
                                      class_vector, reduce)


@LOSSES.register("focal", inputs=("logits", "target"))
class FocalLoss(nn.Module):
    """``loss = FocalLoss(mode="binary", alpha=0.25, gamma=2.0)(logits, target)``.

    Options:
        mode: "multiclass" (softmax over dim 1, integer targets) or "binary" (independent
            sigmoids, 0/1 targets of the logits' shape; also multi-label).
        alpha: None (no weighting); a number in [0, 1]: in "binary" α for positives and 1 - α
            for negatives (the paper's α = 0.25), in "multiclass" a constant factor; or, in
            "multiclass" only, one weight >= 0 per class, α_t = alpha[target].
        gamma: focusing parameter γ >= 0 (the paper's 2.0; 0 disables focusing).
        reduction: "mean" | "sum" | "none" (mean over all elements).
    """

    def __init__(self, *, mode: str = "multiclass",
                 alpha: Optional[Union[float, Sequence[float]]] = None, gamma: float = 2.0,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.mode = check_choice("focal", "mode", mode, ("multiclass", "binary"))
        self.gamma = check_number("focal", "gamma", gamma, ge=0.0)
        self.reduction = check_choice("focal", "reduction", reduction, REDUCTIONS)
        self.alpha: Optional[torch.Tensor]
        if alpha is None:
            a = None
        elif isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
            a = torch.tensor(check_number("focal", "alpha", alpha, ge=0.0, le=1.0))
        elif mode == "binary":
            raise ValueError(f"focal: alpha must be None or a number in [0, 1] in binary mode, "
                             f"got {alpha!r}")
        else:
            a = class_vector("focal", "alpha", alpha)
        self.register_buffer("alpha", a)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Focal loss of ``logits`` against ``target``.

        Args:
            logits: "multiclass": (B, K) or (B, K, *); "binary": any shape, one logit per
                element.
            target: "multiclass": (B,) / (B, *) integer class indices; "binary": 0/1 labels
                (int, bool or float) of the logits' shape.

        Returns:
            A scalar for "mean" / "sum", the elementwise losses for "none"
            ((B, *) in "multiclass", the logits' shape in "binary").
        """
        if self.mode == "binary":
            if target.shape != logits.shape:
                raise ValueError(f"focal: binary targets must have the logits' shape "
                                 f"{tuple(logits.shape)}, got {tuple(target.shape)}")
            y = target.to(logits.dtype)
            # log p and log(1 - p) via logsigmoid stay finite for large |logit|.
            log_pt = y * F.logsigmoid(logits) + (1 - y) * F.logsigmoid(-logits)
            alpha_t = None if self.alpha is None else self.alpha * y + (1 - self.alpha) * (1 - y)
        else:
            if logits.ndim < 2:
                raise ValueError(f"focal: multiclass logits must be (B, K) or (B, K, *), "
                                 f"got shape {tuple(logits.shape)}")
            expected = logits.shape[:1] + logits.shape[2:]
            if target.shape != expected or target.is_floating_point():
                raise ValueError(f"focal: multiclass targets must be integer class indices of "
                                 f"shape {tuple(expected)}, got {target.dtype} "
                                 f"{tuple(target.shape)}")
            index = target.long()
            log_pt = logits.log_softmax(dim=1).gather(1, index.unsqueeze(1)).squeeze(1)  # (B, *)
            if self.alpha is None:
                alpha_t = None
            elif self.alpha.ndim == 0:
                alpha_t = self.alpha
            else:
                if self.alpha.numel() != logits.shape[1]:
                    raise ValueError(f"focal: alpha has {self.alpha.numel()} entries but logits "
                                     f"have K={logits.shape[1]} classes")
                alpha_t = self.alpha[index]
        loss = -log_pt
        if self.gamma > 0:
            loss = (1 - log_pt.exp()).pow(self.gamma) * loss
        if alpha_t is not None:
            loss = alpha_t.to(loss.dtype) * loss
        return reduce(loss, self.reduction)
