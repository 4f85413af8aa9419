"""Optimizers by name, with parameter groups that exempt norms and biases from weight decay.

Decay on BN/LN scales and biases only shrinks them toward zero without regularizing the
function (their scale is re-normalized away), so the default follows timm / nanoGPT and
decays only weights with ndim >= 2.
"""

from __future__ import annotations

from typing import Annotated, Callable

import torch
from pydantic import Field, field_validator
from torch import nn

from archlab.config import config_dataclass, known_name
from archlab.registry import Registry

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


@config_dataclass
class OptimConfig:
    name: str = "sgd"
    lr: Annotated[float, Field(gt=0.0)] = 0.1
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    """SGD/RMSprop momentum."""
    nesterov: bool = True
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.9, 0.999)
    eps: Annotated[float, Field(gt=0.0)] = 1e-8
    decay_norm_and_bias: bool = False
    """Apply weight decay to norm parameters and biases too."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        return known_name(OPTIMIZERS, name)


def _sgd(params, cfg: OptimConfig):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


OPTIMIZERS.add("sgd", _sgd)
OPTIMIZERS.add("adam", lambda params, cfg: torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas,
                                                            eps=cfg.eps))
OPTIMIZERS.add("adamw", lambda params, cfg: torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas,
                                                              eps=cfg.eps))
OPTIMIZERS.add("rmsprop", lambda params, cfg: torch.optim.RMSprop(params, lr=cfg.lr, eps=cfg.eps,
                                                                  momentum=cfg.momentum))


def param_groups(model: nn.Module, weight_decay: float,
                 decay_norm_and_bias: bool = False) -> list[dict]:
    if decay_norm_and_bias:
        return [{"params": [p for p in model.parameters() if p.requires_grad],
                 "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias)
    return OPTIMIZERS.get(cfg.name)([g for g in groups if g["params"]], cfg)
