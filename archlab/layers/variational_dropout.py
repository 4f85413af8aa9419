"""Multiplicative Gaussian noise instead of Bernoulli masks: Gaussian dropout with a fixed rate,
and variational dropout whose rate is learned.

* ``GaussianDropout(p)`` — Srivastava et al. 2014 (JMLR, section 10): multiply by
  ξ ~ N(1, α) with α = p / (1 - p), which has the mean and variance of inverted Bernoulli
  dropout at rate p. Evaluation is the identity (E[ξ] = 1).
* ``VariationalDropout(p)`` — Kingma, Salimans & Welling 2015, "Variational Dropout and the Local
  Reparameterization Trick": the same noise, but log α is a parameter trained through the
  reparameterization ξ = 1 + √α · ε, regularized by the KL divergence from the log-uniform prior
  (the prior under which Gaussian dropout is exact variational inference). One α per layer by
  default, or one per feature (``num_features``) along dim 1. Kingma et al. cap α at 1
  (``max_log_alpha=0``) because larger noise made their gradients too noisy.

The KL term uses Molchanov, Ashukha & Vetrov 2017 ("Variational Dropout Sparsifies Deep Neural
Networks", eq. 14), accurate for every α, unlike Kingma et al.'s polynomial (fit on α <= 1):

    -KL(α) ≈ k1 · sigmoid(k2 + k3 · log α) - 0.5 · log(1 + 1/α) - k1,
    k1 = 0.63576, k2 = 1.87320, k3 = 1.48695.

Add ``variational_kl(model) / N_train`` to the per-example loss for the ELBO; with
``model.dropout=variational`` the run does that for you. The KL is counted once per noise unit
(each element of one example's input to the layer); Kingma et al. count it per weight of the
following layer, i.e. scaled by its fan-out, which only changes the KL's weight.

``convert_dropout(model, "variational")`` swaps every ``nn.Dropout`` of a built model for the
chosen kind at the same rate, so every model family supports it without its own option.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Molchanov et al. 2017, eq. 14
K1, K2, K3 = 0.63576, 1.87320, 1.48695


def neg_kl_log_uniform(log_alpha: torch.Tensor) -> torch.Tensor:
    """-KL(N(θ, αθ²) || log-uniform) per noise unit, up to the prior's constant (-> 0 as
    α -> ∞). Elementwise over ``log_alpha``."""
    return (K1 * torch.sigmoid(K2 + K3 * log_alpha)
            - 0.5 * nn.functional.softplus(-log_alpha) - K1)  # log(1 + 1/α) = softplus(-log α)


def _alpha_for(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {p}")
    return p / (1.0 - p)


class _CappedLogAlpha(torch.autograd.Function):
    """``min(x, cap)``. A plain clamp has zero gradient above the cap, so once an optimizer step
    overshoots it (the KL always pushes α up, and p = 0.5 starts exactly at the cap) the rate
    would be frozen at the cap for good, whatever the data loss asks. Here the gradient also
    passes above the cap whenever a descent step would move ``x`` back down (grad > 0), and is
    blocked when it would push ``x`` further up: a clamp that never traps the parameter."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, cap: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.cap = cap
        return x.clamp(max=cap)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ((x <= ctx.cap) | (grad > 0)).to(grad.dtype), None


class GaussianDropout(nn.Module):
    """``x * ξ``, ξ ~ N(1, p / (1 - p)), in training; identity in evaluation."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)
        self.alpha = _alpha_for(self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.alpha == 0.0:
            return x
        return x * (1.0 + math.sqrt(self.alpha) * torch.randn_like(x))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class VariationalDropout(nn.Module):
    """Gaussian dropout with a learned rate: ``log_alpha`` is a parameter (shape () or
    (num_features,)) initialized at log(p / (1 - p)); ``kl()`` is its KL term for the last
    input size seen."""

    def __init__(self, p: float = 0.5, num_features: int | None = None,
                 max_log_alpha: float = 0.0) -> None:
        super().__init__()
        alpha = _alpha_for(p)
        if alpha == 0.0:
            raise ValueError("VariationalDropout needs p > 0 to start from (log α must be finite)")
        shape = () if num_features is None else (num_features,)
        self.log_alpha = nn.Parameter(torch.full(shape, math.log(alpha)))
        self.max_log_alpha = float(max_log_alpha)
        self.units_per_example = 0  # noise elements per example, set by forward

    @property
    def alpha(self) -> torch.Tensor:
        return self.clamped_log_alpha().exp()

    def clamped_log_alpha(self) -> torch.Tensor:
        """``min(log_alpha, max_log_alpha)``, with a gradient that can bring an over-the-cap
        ``log_alpha`` back (see :class:`_CappedLogAlpha`)."""
        return _CappedLogAlpha.apply(self.log_alpha, self.max_log_alpha)

    def _broadcast(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            return t
        if x.ndim < 2 or x.shape[1] != t.shape[0]:
            raise ValueError(f"VariationalDropout has {t.shape[0]} per-feature rates but got "
                             f"input {tuple(x.shape)}; features must be dim 1")
        return t.view(1, -1, *([1] * (x.ndim - 2)))  # (F,) -> (1, F, 1, ...)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.units_per_example = x[0].numel() if x.ndim > 0 else 1
        if not self.training:
            return x
        std = self._broadcast(self.clamped_log_alpha().mul(0.5).exp(), x).to(x.dtype)  # √α
        return x * (1.0 + std * torch.randn_like(x))

    def kl(self) -> torch.Tensor:
        """KL of all this layer's noise units for one example (0 before the first forward)."""
        per_unit = -neg_kl_log_uniform(self.clamped_log_alpha())
        if per_unit.ndim == 0:
            return per_unit * self.units_per_example
        # per-feature rates: each feature's rate covers units_per_example / F elements
        return per_unit.sum() * (self.units_per_example / per_unit.numel())

    def extra_repr(self) -> str:
        return (f"p={self.alpha.mean().item() / (1 + self.alpha.mean().item()):.3g}, "
                f"shape={tuple(self.log_alpha.shape)}, max_log_alpha={self.max_log_alpha}")


DROPOUT_KINDS = ("standard", "gaussian", "variational")


def convert_dropout(model: nn.Module, kind: str) -> int:
    """Replace every ``nn.Dropout`` (p > 0) in ``model`` by ``kind`` at the same rate, in place.
    Returns how many were replaced. AlphaDropout (SELU nets) and the structured dropouts
    (DropPath, SpatialDropout) are left alone: their noise has a different purpose."""
    if kind not in DROPOUT_KINDS:
        raise ValueError(f"unknown dropout kind {kind!r}; choose one of {', '.join(DROPOUT_KINDS)}")
    if kind == "standard":
        return 0
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout and child.p > 0:
                new = GaussianDropout(child.p) if kind == "gaussian" else VariationalDropout(child.p)
                setattr(parent, name, new)
                replaced += 1
    return replaced


def variational_kl(model: nn.Module) -> torch.Tensor:
    """Sum of every VariationalDropout layer's KL (a scalar tensor, 0 if there is none)."""
    terms = [m.kl() for m in model.modules() if isinstance(m, VariationalDropout)]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()
