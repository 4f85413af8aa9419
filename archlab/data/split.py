"""Seeded train/validation splits and class-balanced subsets.

Both are stratified by class so a 10% validation split or a 100-per-class subset keeps the class
balance of the source; both are pure functions of (labels, seed), so a run is reproducible.
Works on in-memory :class:`ArraySplit` s and on any ``Dataset`` exposing ``labels`` or
``targets``.
"""

from __future__ import annotations

import torch
from torch.utils.data import Subset

from archlab.data._registry import ArraySplit, Split


def labels_of(split: Split) -> torch.Tensor:
    if isinstance(split, ArraySplit):
        return split.labels
    if isinstance(split, Subset):
        return labels_of(split.dataset)[torch.as_tensor(split.indices)]
    targets = getattr(split, "labels", None)
    if targets is None:
        targets = getattr(split, "targets", None)
    if targets is None:
        raise TypeError(f"{type(split).__name__} has no 'labels' or 'targets'; cannot stratify "
                        f"it by class")
    return torch.as_tensor(targets)


def take(split: Split, index: torch.Tensor) -> Split:
    if isinstance(split, ArraySplit):
        return split.subset(index)
    return Subset(split, index.tolist())


def _per_class_permutations(labels: torch.Tensor, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        out.append(idx[torch.randperm(len(idx), generator=g)])
    return out


def train_val_split(split: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out ``val_fraction`` of every class as validation data."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train_idx, val_idx = [], []
    for idx in _per_class_permutations(labels_of(split), seed):
        n_val = max(1, round(len(idx) * val_fraction))
        val_idx.append(idx[:n_val])
        train_idx.append(idx[n_val:])
    return (take(split, torch.cat(train_idx).sort().values),
            take(split, torch.cat(val_idx).sort().values))


def balanced_subset(split: Split, *, fraction: float | None = None,
                    per_class: int | None = None, seed: int = 0) -> Split:
    """Keep ``fraction`` of each class, or exactly ``per_class`` examples of each class."""
    if (fraction is None) == (per_class is None):
        raise ValueError("give exactly one of fraction or per_class")
    keep = []
    for idx in _per_class_permutations(labels_of(split), seed):
        n = round(len(idx) * fraction) if fraction is not None else per_class
        if n > len(idx):
            raise ValueError(f"per_class={per_class} but a class has only {len(idx)} examples")
        keep.append(idx[:max(1, n)])
    return take(split, torch.cat(keep).sort().values)


__all__ = ["balanced_subset", "labels_of", "train_val_split"]
