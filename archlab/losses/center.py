"""Center loss (Wen et al. 2016, "A Discriminative Feature Learning Approach for Deep Face
Recognition", eq. 2).

L_C = 1/2 · mean_i ||x_i - c_{y_i}||², pulling every feature toward a learned center of its
class. It is used next to softmax cross-entropy, L = L_S + λ L_C: cross-entropy keeps the
classes apart, the center term makes each class compact.

The centers are a parameter of this module, so they must reach the optimizer and the
checkpoint. Wen et al. update them with their own rate α (eq. 4); here they are learned by the
same optimizer in their own parameter group with lr = base lr × ``center_lr_multiplier``::

    center = CenterLoss(num_classes=10, feat_dim=model.num_features, center_lr_multiplier=10.0)
    groups = param_groups(model, weight_decay=5e-4) + [center.param_group(lr=0.1)]
    optimizer = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    ...
    features = model.forward_head(model.forward_features(x), pre_logits=True)  # (B, D)
    logits = model.get_classifier()(features)                                  # (B, K)
    loss = F.cross_entropy(logits, y) + lam * center(features, y)

An LR schedule built with ``LambdaLR`` scales every group's initial lr, so the ratio between
the centers' lr and the network's lr holds for the whole run.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.losses._registry import (LOSSES, REDUCTIONS, check_choice, check_int, check_number,
                                      reduce)


@LOSSES.register("center", inputs=("features", "target"))
class CenterLoss(nn.Module):
    """``loss = CenterLoss(num_classes=10, feat_dim=64)(features, target)``.

    Options:
        num_classes: number of classes (rows of ``centers``), >= 1.
        feat_dim: feature size D (columns of ``centers``), >= 1.
        center_lr_multiplier: lr of the centers relative to the base lr, > 0; read by
            :meth:`param_group`.
        reduction: "mean" (the paper's value up to the batch-size factor), "sum" | "none".
    """

    def __init__(self, *, num_classes: int, feat_dim: int, center_lr_multiplier: float = 1.0,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.num_classes = check_int("center", "num_classes", num_classes, ge=1)
        self.feat_dim = check_int("center", "feat_dim", feat_dim, ge=1)
        self.center_lr_multiplier = check_number("center", "center_lr_multiplier",
                                                 center_lr_multiplier, gt=0.0)
        self.reduction = check_choice("center", "reduction", reduction, REDUCTIONS)
        # Random start as in common reimplementations; the paper does not specify one.
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.feat_dim))

    def param_group(self, lr: float) -> dict:
        """Optimizer group for the centers: ``lr * center_lr_multiplier`` and no weight decay
        (decay would drag every center toward the origin, away from its class's features)."""
        lr = check_number("center", "lr", lr, gt=0.0)
        return {"params": [self.centers], "lr": lr * self.center_lr_multiplier,
                "weight_decay": 0.0}

    def forward(self, features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Half the squared distance of each feature to its class center.

        Args:
            features: (B, D) deep features (e.g. ``forward_head(..., pre_logits=True)``).
            target: (B,) integer class ids in [0, num_classes).

        Returns:
            A scalar for "mean" / "sum"; (B,) per-sample losses for "none".
        """
        if features.ndim != 2 or features.shape[1] != self.feat_dim:
            raise ValueError(f"center: features must be (B, {self.feat_dim}), "
                             f"got shape {tuple(features.shape)}")
        if target.shape != features.shape[:1] or target.is_floating_point():
            raise ValueError(f"center: target must be ({features.shape[0]},) integer class ids, "
                             f"got {target.dtype} {tuple(target.shape)}")
        centers = self.centers.to(features.dtype)[target.long()]  # (B, D)
        loss = 0.5 * (features - centers).pow(2).sum(dim=1)  # (B,)
        return reduce(loss, self.reduction)
