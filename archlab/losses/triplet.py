"""Triplet losses: given triplets (Schroff et al. 2015, "FaceNet") and mined from a
labelled batch (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss", eq. 5).

L = max(0, d(a, p) - d(a, n) + m): an anchor must be closer to a positive (same identity) than
to a negative by the margin m. FaceNet used squared Euclidean distances on L2-normalized
embeddings with m = 0.2 (``squared=True, normalize=True, margin=0.2``); Hermans et al. found
plain Euclidean distances train more stably and mine "batch hard" triplets: for each anchor,
the farthest positive and the closest negative in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.losses._registry import (LOSSES, REDUCTIONS, check_bool, check_choice, check_number,
                                      reduce)

# Floor under squared distances before the square root: the derivative of sqrt is infinite at
# 0 (e.g. an anchor with itself), which would turn masked-out entries into NaN gradients.
_MIN_SQ_DIST = 1e-12


def _distance(sq_dist: torch.Tensor, squared: bool) -> torch.Tensor:
    return sq_dist if squared else sq_dist.clamp_min(_MIN_SQ_DIST).sqrt()


def pairwise_distances(x: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """(B, D) -> (B, B) Euclidean (or squared) distances between all rows.

    Uses ||a||² + ||b||² - 2 a·b, so memory is O(B²) rather than O(B² D).
    """
    sq_norm = x.pow(2).sum(dim=1)
    sq_dist = (sq_norm[:, None] + sq_norm[None, :] - 2 * x @ x.T).clamp_min(0)
    return _distance(sq_dist, squared)


@LOSSES.register("triplet", inputs=("anchor", "positive", "negative"))
class TripletLoss(nn.Module):
    """``loss = TripletLoss(margin=0.2)(anchor, positive, negative)`` on given triplets.

    With the defaults it equals ``torch.nn.TripletMarginLoss(margin=...)`` (p=2).

    Options:
        margin: m >= 0.
        squared: use squared Euclidean distances (FaceNet) instead of Euclidean.
        normalize: L2-normalize the embeddings first (FaceNet's unit hypersphere).
        reduction: "mean" | "sum" over triplets, or "none" for the (B,) losses.
    """

    def __init__(self, *, margin: float = 1.0, squared: bool = False, normalize: bool = False,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_number("triplet", "margin", margin, ge=0.0)
        self.squared = check_bool("triplet", "squared", squared)
        self.normalize = check_bool("triplet", "normalize", normalize)
        self.reduction = check_choice("triplet", "reduction", reduction, REDUCTIONS)

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor,
                negative: torch.Tensor) -> torch.Tensor:
        """Hinge on d(anchor, positive) - d(anchor, negative) + margin.

        Args:
            anchor, positive, negative: (B, D) embeddings; row i of each forms triplet i.

        Returns:
            A scalar for "mean" / "sum"; (B,) per-triplet losses for "none".
        """
        if anchor.ndim != 2 or anchor.shape != positive.shape or anchor.shape != negative.shape:
            raise ValueError(f"triplet: anchor, positive and negative must all be (B, D), got "
                             f"{tuple(anchor.shape)}, {tuple(positive.shape)}, "
                             f"{tuple(negative.shape)}")
        if self.normalize:
            anchor, positive, negative = (F.normalize(t, dim=1)
                                          for t in (anchor, positive, negative))
        d_ap = _distance((anchor - positive).pow(2).sum(dim=1), self.squared)  # (B,)
        d_an = _distance((anchor - negative).pow(2).sum(dim=1), self.squared)
        return reduce((d_ap - d_an + self.margin).clamp_min(0), self.reduction)


@LOSSES.register("triplet_batch_hard", inputs=("embeddings", "target"))
class BatchHardTripletLoss(nn.Module):
    """``loss = BatchHardTripletLoss(margin=0.2)(embeddings, labels)``.

    Every sample is an anchor; its triplet is (hardest positive, hardest negative) within the
    batch. Sample batches as P identities × K images (Hermans et al. used P=18, K=4) so every
    anchor has positives. Anchors without a positive or a negative in the batch are skipped:
    they count 0 in "none" and are left out of "mean".

    Options: as :class:`TripletLoss` (margin, squared, normalize, reduction).
    """

    def __init__(self, *, margin: float = 1.0, squared: bool = False, normalize: bool = False,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.margin = check_number("triplet_batch_hard", "margin", margin, ge=0.0)
        self.squared = check_bool("triplet_batch_hard", "squared", squared)
        self.normalize = check_bool("triplet_batch_hard", "normalize", normalize)
        self.reduction = check_choice("triplet_batch_hard", "reduction", reduction, REDUCTIONS)

    def mine(self, embeddings: torch.Tensor, target: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batch-hard mining: ``(dist, positive_index, negative_index, valid)``.

        ``dist`` is the (B, B) distance matrix; for anchor i, ``positive_index[i]`` is the
        farthest sample with the same label (excluding i itself), ``negative_index[i]`` the
        closest sample with another label, and ``valid[i]`` says whether both exist.
        """
        if embeddings.ndim != 2:
            raise ValueError(f"triplet_batch_hard: embeddings must be (B, D), "
                             f"got shape {tuple(embeddings.shape)}")
        if target.shape != embeddings.shape[:1] or target.is_floating_point():
            raise ValueError(f"triplet_batch_hard: target must be ({embeddings.shape[0]},) "
                             f"integer labels, got {target.dtype} {tuple(target.shape)}")
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        dist = pairwise_distances(embeddings, self.squared)  # (B, B)
        same = target[:, None] == target[None, :]
        eye = torch.eye(len(target), dtype=torch.bool, device=target.device)
        is_pos, is_neg = same & ~eye, ~same
        # Masked entries are pushed out of reach of max / min; distances are >= 0.
        positive_index = dist.masked_fill(~is_pos, -1.0).argmax(dim=1)
        negative_index = dist.masked_fill(~is_neg, float("inf")).argmin(dim=1)
        valid = is_pos.any(dim=1) & is_neg.any(dim=1)
        return dist, positive_index, negative_index, valid

    def forward(self, embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Batch-hard triplet loss.

        Args:
            embeddings: (B, D) embeddings.
            target: (B,) integer identity labels.

        Returns:
            A scalar for "mean" / "sum"; (B,) per-anchor losses for "none".
        """
        dist, pos, neg, valid = self.mine(embeddings, target)
        rows = torch.arange(len(target), device=dist.device)
        loss = (dist[rows, pos] - dist[rows, neg] + self.margin).clamp_min(0) * valid  # (B,)
        if self.reduction == "mean":
            return loss.sum() / valid.sum().clamp_min(1)
        return reduce(loss, self.reduction)
