"""Contrastive loss on pairs (Hadsell, Chopra & LeCun 2006, "Dimensionality Reduction by
Learning an Invariant Mapping", eq. 4).

L = same · ½ D² + (1 - same) · ½ max(0, m - D)², D = ||x1 - x2||₂. Similar pairs are pulled
together; dissimilar pairs are pushed apart only while closer than the margin m, so the
embedding is not stretched without bound. (The paper writes Y = 0 for similar pairs; here
``same=True`` means similar.)
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.losses._registry import LOSSES, REDUCTIONS, check_choice, check_number, reduce

# D = sqrt(D²) has an infinite derivative at 0; flooring D² keeps identical dissimilar pairs'
# gradients finite (zero) instead of NaN. Far below any distance a float32 embedding resolves.
_MIN_SQ_DIST = 1e-12


@LOSSES.register("contrastive", inputs=("x1", "x2", "same"))
class ContrastiveLoss(nn.Module):
    """``loss = ContrastiveLoss(margin=1.0)(x1, x2, same)``.

    Options:
        margin: m > 0, the distance beyond which dissimilar pairs cost nothing.
        reduction: "mean" | "sum" over pairs, or "none" for the (B,) losses.
    """

    def __init__(self, *, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_number("contrastive", "margin", margin, gt=0.0)
        self.reduction = check_choice("contrastive", "reduction", reduction, REDUCTIONS)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """Contrastive loss of the pairs (x1[i], x2[i]).

        Args:
            x1, x2: (B, D) embeddings of the two members of each pair.
            same: (B,) bool (or 0/1) tensor, True where the pair is similar.

        Returns:
            A scalar for "mean" / "sum"; (B,) per-pair losses for "none".
        """
        if x1.ndim != 2 or x1.shape != x2.shape:
            raise ValueError(f"contrastive: x1 and x2 must both be (B, D), got "
                             f"{tuple(x1.shape)} and {tuple(x2.shape)}")
        if same.shape != x1.shape[:1]:
            raise ValueError(f"contrastive: same must be ({x1.shape[0]},), "
                             f"got {tuple(same.shape)}")
        sq_dist = (x1 - x2).pow(2).sum(dim=1)  # (B,)
        dist = sq_dist.clamp_min(_MIN_SQ_DIST).sqrt()
        y = same.to(x1.dtype)
        loss = 0.5 * (y * sq_dist + (1 - y) * (self.margin - dist).clamp_min(0).pow(2))
        return reduce(loss, self.reduction)
