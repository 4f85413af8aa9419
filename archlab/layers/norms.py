"""Normalization layers chosen by name: ``create_norm("group", 64)``.

``batch`` / ``instance`` pick the 1-d or 2-d variant from ``dims``; ``layer`` on feature maps
normalizes over (C, H, W) per sample (GroupNorm with one group, as in ConvNeXt/timm);
``group`` uses 32 groups or fewer when the channel count is small (Wu & He 2018).
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from archlab.registry import Registry

NORMS: Registry[Callable[[int, int], nn.Module]] = Registry("normalization")


def _group_count(num_channels: int, preferred: int = 32) -> int:
    groups = min(preferred, num_channels)
    while num_channels % groups:
        groups -= 1
    return groups


NORMS.add("batch", lambda c, dims: nn.BatchNorm2d(c) if dims == 2 else nn.BatchNorm1d(c))
NORMS.add("instance", lambda c, dims: nn.InstanceNorm2d(c, affine=True) if dims == 2
          else nn.InstanceNorm1d(c, affine=True))
NORMS.add("layer", lambda c, dims: nn.GroupNorm(1, c) if dims == 2 else nn.LayerNorm(c))
NORMS.add("group", lambda c, dims: nn.GroupNorm(_group_count(c), c))
NORMS.add("none", lambda c, dims: nn.Identity())


def create_norm(name: str, num_channels: int, dims: int = 2) -> nn.Module:
    """Norm over ``num_channels``; ``dims=2`` for (B, C, H, W), ``dims=1`` for (B, C) features."""
    return NORMS.get(name)(num_channels, dims)
