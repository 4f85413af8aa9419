"""Structured dropout: whole samples (DropPath), whole weights (DropConnect), whole channels
(SpatialDropout).

All three use *inverted* scaling: kept units are multiplied by 1/(1-p) during training so the
expectation of the output equals the input, and evaluation is the identity.

* ``DropPath`` — stochastic depth (Huang et al., ECCV 2016): drop a residual branch for a whole
  sample. Used inside residual blocks as ``x + drop_path(branch(x))``. (The EfficientNet
  reference code calls this "drop_connect"; it is *not* Wan et al.'s DropConnect.)
* ``DropConnect`` — Wan et al., ICML 2013: zero individual *weights* of a Linear / Conv. The
  paper's inference approximates the mean network by moment matching; here, as is common
  practice, the weights are rescaled instead so eval uses the plain weights. One mask is drawn
  per forward pass (shared by the batch).
* ``SpatialDropout`` — Tompson et al., CVPR 2015: zero whole feature maps per sample, because
  neighbouring activations are correlated and element-wise dropout barely regularizes them.
  Same semantics as ``torch.nn.Dropout2d`` / ``Dropout3d`` for batched input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call


def _check_p(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"drop probability must be in [0, 1], got {p}")
    return float(p)


def _keep_mask(shape: tuple[int, ...], p: float, like: torch.Tensor) -> torch.Tensor:
    """Bernoulli(1-p) mask scaled by 1/(1-p) (all zeros when p == 1)."""
    keep = 1.0 - p
    mask = like.new_empty(shape).bernoulli_(keep)
    return mask.div_(keep) if keep > 0 else mask


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero each sample of ``x`` (B, ...) with probability ``p``; scale survivors by 1/(1-p)."""
    if not training or p == 0.0:
        return x
    return x * _keep_mask((x.shape[0],) + (1,) * (x.ndim - 1), p, x)  # one draw per sample


class DropPath(nn.Module):
    """Stochastic depth on a residual branch: ``x + DropPath(p)(branch(x))``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def spatial_dropout(x: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """Zero whole channels of ``x`` (B, C, *spatial) per sample with probability ``p``."""
    if x.ndim < 3:
        raise ValueError(f"spatial dropout expects (B, C, *spatial) input, got shape "
                         f"{tuple(x.shape)}; use nn.Dropout for (B, C) features")
    if not training or p == 0.0:
        return x
    return x * _keep_mask(tuple(x.shape[:2]) + (1,) * (x.ndim - 2), p, x)  # (B, C, 1, ...)


class SpatialDropout(nn.Module):
    """Channel dropout for feature maps (B, C, H, W) or sequences (B, C, L)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_p(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spatial_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_connect(weight: torch.Tensor, p: float = 0.0, training: bool = False) -> torch.Tensor:
    """``weight`` with each entry zeroed with probability ``p`` and survivors scaled by 1/(1-p)."""
    if not training or p == 0.0:
        return weight
    return weight * _keep_mask(tuple(weight.shape), p, weight)


class DropConnect(nn.Module):
    """Wrap a module that has a ``weight`` (Linear, Conv*) so training sees dropped weights::

        fc = DropConnect(nn.Linear(512, 10), p=0.5)

    The wrapped module lives at ``.module`` (its state_dict keys gain a ``module.`` prefix).
    """

    def __init__(self, module: nn.Module, p: float = 0.5) -> None:
        super().__init__()
        if not isinstance(getattr(module, "weight", None), torch.Tensor):
            raise TypeError(f"DropConnect needs a module with a 'weight' tensor (Linear, Conv), "
                            f"got {type(module).__name__}")
        self.module = module
        self.p = _check_p(p)

    def forward(self, *args, **kwargs):
        if not self.training or self.p == 0.0:
            return self.module(*args, **kwargs)
        weight = drop_connect(self.module.weight, self.p, training=True)
        return functional_call(self.module, {"weight": weight}, args, kwargs)

    def extra_repr(self) -> str:
        return f"p={self.p}"
