"""Which device a run uses, and whether a model wants channels-last memory."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but CUDA is not available; use auto or cpu")
    return device


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def wants_channels_last(model: nn.Module, setting: bool | None) -> bool:
    """``train.channels_last``: None turns NHWC on for models with 2-d convolutions."""
    return has_conv(model) if setting is None else setting
