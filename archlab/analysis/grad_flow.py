"""Gradient flow: per-layer gradient magnitudes, ordered by depth, and the two classic failure
checks — vanishing gradients (Hochreiter 1991; Glorot & Bengio 2010: early layers of a deep
sigmoid net receive gradients orders of magnitude smaller than late ones) and exploding ones.

Usage, after ``loss.backward()`` (and after ``GradScaler.unscale_`` when training in fp16)::

    flow = gradient_flow(model)
    flow.layers["blocks.0.0.weight"]   # {"norm": ..., "mean_abs": ...}
    for message in check_gradient_flow(flow, vanishing_ratio=1e-3, exploding_norm=1e3):
        warnings.warn(message, GradientFlowWarning)

The order of ``flow.layers`` is the parameters' registration order, which for every archlab
model is input -> output, i.e. depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn


class GradientFlowWarning(UserWarning):
    """Gradients vanish in early layers or the global gradient norm explodes."""


@dataclass
class GradFlow:
    """Gradient magnitudes of one backward pass.

    ``layers`` maps parameter name -> ``{"norm": ||g||_2, "mean_abs": mean(|g|)}`` in
    registration (depth) order; ``global_norm`` is the L2 norm of all gradients concatenated
    (the quantity ``clip_grad_norm_`` clips). Parameters without a gradient are left out.
    """

    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    global_norm: float = 0.0
    #: Names of the first and last weight tensors (ndim >= 2), the ends compared for vanishing.
    first: str | None = None
    last: str | None = None

    @property
    def depth_ratio(self) -> float | None:
        """||g_first|| / ||g_last|| for the earliest and latest weight tensors (None when the
        model has fewer than two, or the last gradient is exactly zero)."""
        if self.first is None or self.last is None or self.first == self.last:
            return None
        last = self.layers[self.last]["norm"]
        return self.layers[self.first]["norm"] / last if last > 0 else None


@torch.no_grad()
def gradient_flow(model: nn.Module) -> GradFlow:
    """Read every parameter's ``.grad`` (one device sync in total, not one per layer)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"gradient_flow needs an nn.Module, got {type(model).__name__}")
    names, stats, weights = [], [], []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach()
        if g.is_sparse:
            g = g.coalesce().values()
        names.append(name)
        # float64 sums: a 10^-8 gradient in a bf16/fp16 tensor must not round to zero here.
        stats.append(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64),
                                  g.abs().sum(dtype=torch.float64) / max(p.numel(), 1)]))
        if p.ndim >= 2:
            weights.append(name)
    if not names:
        return GradFlow()
    values = torch.stack(stats).cpu().tolist()  # (n_params, 2)
    layers = {n: {"norm": v[0], "mean_abs": v[1]} for n, v in zip(names, values)}
    global_norm = math.sqrt(sum(v[0] ** 2 for v in values))
    return GradFlow(layers, global_norm, weights[0] if weights else None,
                    weights[-1] if weights else None)


def check_gradient_flow(flow: GradFlow, vanishing_ratio: float | None = 1e-3,
                        exploding_norm: float | None = 1e3) -> list[str]:
    """Messages for the failures found (empty when healthy); ``None`` disables a check.

    Vanishing: the first weight tensor's gradient norm is below ``vanishing_ratio`` times the
    last one's. Exploding: the global norm exceeds ``exploding_norm`` or is not finite.
    """
    for label, value in (("vanishing_ratio", vanishing_ratio), ("exploding_norm", exploding_norm)):
        if value is not None and not value > 0:
            raise ValueError(f"{label} must be > 0 (or None to switch the check off), got {value}")
    messages = []
    ratio = flow.depth_ratio
    if vanishing_ratio is not None and ratio is not None and ratio < vanishing_ratio:
        messages.append(
            f"vanishing gradients: ||grad|| of the first layer '{flow.first}' is {ratio:.3g} "
            f"times that of the last layer '{flow.last}' (threshold {vanishing_ratio:g}); "
            f"consider ReLU-family activations, normalization, residual connections or a "
            f"better initialization")
    if exploding_norm is not None and not math.isfinite(flow.global_norm):
        messages.append(f"exploding gradients: the global gradient norm is "
                        f"{flow.global_norm}; consider a lower lr or train.grad_clip_norm")
    elif exploding_norm is not None and flow.global_norm > exploding_norm:
        messages.append(f"exploding gradients: the global gradient norm is "
                        f"{flow.global_norm:.4g} > {exploding_norm:g}; consider a lower lr or "
                        f"train.grad_clip_norm")
    return messages
