"""NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020,
"A Simple Framework for Contrastive Learning of Visual Representations", eq. 1).

Two augmented views of B images give 2B embeddings. For anchor i its positive is the other
view of the same image, and the remaining 2B - 2 embeddings are its negatives:
ℓ(i) = -log exp(sim(z_i, z_j) / τ) / Σ_{k ≠ i} exp(sim(z_i, z_k) / τ), sim = cosine similarity.
The loss averages ℓ over all 2B anchors (both orderings of each positive pair).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.losses._registry import LOSSES, REDUCTIONS, check_choice, check_number, reduce


@LOSSES.register("nt_xent", inputs=("z1", "z2"))
class NTXentLoss(nn.Module):
    """``loss = NTXentLoss(temperature=0.5)(projector(encoder(view1)), projector(encoder(view2)))``.

    Options:
        temperature: τ > 0. SimCLR used 0.1 for ImageNet (large batches) and 0.5 for CIFAR-10;
            smaller τ weights the hardest negatives more.
        reduction: "mean" | "sum" over the 2B anchors, or "none" for the (2B,) losses
            (rows 0..B-1 anchor on view 1, rows B..2B-1 on view 2).
    """

    def __init__(self, *, temperature: float = 0.5, reduction: str = "mean") -> None:
        super().__init__()
        self.temperature = check_number("nt_xent", "temperature", temperature, gt=0.0)
        self.reduction = check_choice("nt_xent", "reduction", reduction, REDUCTIONS)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """NT-Xent between two views.

        Args:
            z1, z2: (B, D) projections of the two views; row i of both comes from image i.

        Returns:
            A scalar for "mean" / "sum"; (2B,) per-anchor losses for "none".
        """
        if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] < 2:
            raise ValueError(f"nt_xent: z1 and z2 must both be (B, D) with B >= 2 (each anchor "
                             f"needs negatives), got {tuple(z1.shape)} and {tuple(z2.shape)}")
        b = z1.shape[0]
        z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, D), unit rows: dot = cosine
        logits = z @ z.T / self.temperature  # (2B, 2B)
        # An anchor is not its own negative: drop the diagonal from the softmax denominator.
        eye = torch.eye(2 * b, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(eye, float("-inf"))
        positive = torch.arange(2 * b, device=z.device).roll(b)  # i <-> i + B
        return reduce(F.cross_entropy(logits, positive, reduction="none"), self.reduction)
