"""Soft Dice loss for segmentation (Milletari et al. 2016, "V-Net", eq. 1).

D = 2 Σ p g / (Σ p² + Σ g²) over the pixels of one image and one class, where p are predicted
probabilities and g the one-hot ground truth; the loss is 1 - D. Dice compares overlap with
size, so it is insensitive to how much of the image is background, which is why V-Net used it
for small foreground volumes. ``squared_denominator=False`` gives the Sørensen form
Σ p + Σ g used by many later works (e.g. nnU-Net); on hard predictions both coincide.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.losses._registry import (LOSSES, REDUCTIONS, check_bool, check_choice, check_number,
                                      reduce)


@LOSSES.register("dice", inputs=("logits", "target"))
class DiceLoss(nn.Module):
    """``loss = DiceLoss(mode="multiclass")(logits, masks)``, masks (B, H, W) of class ids.

    Options:
        mode: "multiclass" (softmax over C >= 2 channels, one Dice per class) or "binary"
            (C == 1, sigmoid, target in {0, 1}).
        smooth: ε >= 0 added to numerator and denominator, (2I + ε) / (P + G + ε): keeps the
            ratio defined for a class absent from both prediction and target (then D = 1).
        squared_denominator: True for Milletari's Σ p² + Σ g², False for Σ p + Σ g.
        reduction: "mean" | "sum" over images and classes, or "none" for the (B, C) losses.
    """

    def __init__(self, *, mode: str = "multiclass", smooth: float = 1.0,
                 squared_denominator: bool = True, reduction: str = "mean") -> None:
        super().__init__()
        self.mode = check_choice("dice", "mode", mode, ("multiclass", "binary"))
        self.smooth = check_number("dice", "smooth", smooth, ge=0.0)
        self.squared_denominator = check_bool("dice", "squared_denominator", squared_denominator)
        self.reduction = check_choice("dice", "reduction", reduction, REDUCTIONS)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Dice loss of per-pixel ``logits`` against a class mask.

        Args:
            logits: (B, C, H, W) (any number of spatial dims); C == 1 in "binary".
            target: (B, H, W) integer class ids in [0, C) ("multiclass") or 0/1 ("binary").

        Returns:
            A scalar for "mean" / "sum"; (B, C) per-image, per-class losses for "none".
        """
        if logits.ndim < 3:
            raise ValueError(f"dice: logits must be (B, C, H, W), got shape {tuple(logits.shape)}")
        b, c = logits.shape[:2]
        expected = logits.shape[:1] + logits.shape[2:]
        if target.shape != expected:
            raise ValueError(f"dice: target must have shape {tuple(expected)} (logits without "
                             f"the channel dim), got {tuple(target.shape)}")
        if self.mode == "binary":
            if c != 1:
                raise ValueError(f"dice: binary mode needs logits with C=1 channel, got C={c}")
            prob = logits.sigmoid()
            onehot = target.unsqueeze(1).to(prob.dtype)  # (B, H, W) -> (B, 1, H, W)
        else:
            if c < 2:
                raise ValueError(f"dice: multiclass mode needs C >= 2 channels, got C={c}; "
                                 f"use mode='binary' for one channel")
            prob = logits.softmax(dim=1)
            # (B, H, W) -> (B, H, W, C) -> (B, C, H, W)
            onehot = F.one_hot(target.long(), c).movedim(-1, 1).to(prob.dtype)
        prob, onehot = prob.flatten(2), onehot.flatten(2)  # (B, C, N)
        intersection = (prob * onehot).sum(-1)
        if self.squared_denominator:
            denominator = (prob * prob).sum(-1) + (onehot * onehot).sum(-1)
        else:
            denominator = prob.sum(-1) + onehot.sum(-1)
        dice = (2 * intersection + self.smooth) / (denominator + self.smooth)  # (B, C)
        return reduce(1 - dice, self.reduction)
