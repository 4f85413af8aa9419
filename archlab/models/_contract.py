"""The model contract every archlab classifier follows.

Transfer learning, analysis, export and profiling rely only on this interface, so none of
them needs per-model code:

* ``forward_features(x)``: the backbone, un-pooled feature map (or tokens);
* ``forward_head(x, pre_logits=False)``: pooling + classifier; ``pre_logits=True`` returns the
  pooled embedding instead of the logits;
* ``reset_classifier(num_classes)``: replace the classifier (0 gives an identity head);
* ``forward_intermediates(x)``: the per-stage feature maps, shallow to deep;
* ``default_cfg``: a :class:`DefaultCfg` with input size, normalization, the classifier's and the
  first conv's module names and the paper.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn


from archlab.layers.normalization_constants import IMAGENET_MEAN, IMAGENET_STD


def imagenet_stats(in_chans: int) -> dict[str, tuple[float, ...]]:
    """ImageNet normalization for RGB models, a neutral 0.5/0.5 for any other channel count."""
    if in_chans == 3:
        return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return {"mean": (0.5,) * in_chans, "std": (0.5,) * in_chans}


@dataclass(frozen=True)
class DefaultCfg:
    input_size: tuple[int, ...]  # (C, H, W) for images; (max_len,) etc. for sequence models
    num_classes: int
    classifier: str  # attribute path of the final classifier module
    first_conv: str | None  # attribute path of the first conv (None for MLPs / token models)
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    family: str = ""
    paper: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def with_(self, **changes) -> "DefaultCfg":
        return replace(self, **changes)


class Classifier(nn.Module):
    """Base class: ``forward = forward_head ∘ forward_features``."""

    default_cfg: DefaultCfg
    num_classes: int
    num_features: int  # width of the pre-logits embedding

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        raise NotImplementedError

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.default_cfg.classifier)


def linear_or_identity(in_features: int, num_classes: int) -> nn.Module:
    """The classifier a ``reset_classifier(0)`` call leaves: identity, as in timm."""
    return nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()
