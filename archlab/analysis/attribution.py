"""Input attribution: which pixels move a class score.

* :func:`saliency` (Simonyan et al., Deep Inside Convolutional Networks, ICLR-W 2014, §3.1):
  ``|∂y_c/∂x|``, the maximum over colour channels per pixel.
* :func:`integrated_gradients` (Sundararajan et al., Axiomatic Attribution for Deep Networks,
  ICML 2017, Eq. 1): ``(x - x') · ∫₀¹ ∂y_c/∂x(x' + α(x - x')) dα``, approximated by a quadrature
  rule over ``steps`` points. It satisfies *completeness* (Prop. 1): the attributions of one
  example sum to ``y_c(x) - y_c(x')``; ``return_delta=True`` reports the quadrature's miss.

Usage::

    maps = saliency(model, x)                       # (B, H, W) >= 0, predicted class
    attr, delta = integrated_gradients(model, x, target=y, steps=64, return_delta=True)
    maps = heatmap(attr)                            # (B, H, W) in [0, 1] for plotting

``target`` is ``None`` (the predicted class), an int (one class for all) or a (B,) tensor.
The model runs in eval mode (restored afterwards) so batch norm and dropout do not couple
examples or add noise.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch
from torch import nn

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
           "gausslegendre")
REDUCTIONS = ("abs_sum", "abs_max", "sum")


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode inside the block and restore its train/eval flag after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_images(x: torch.Tensor, what: str = "x") -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.dtype.is_floating_point:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        dtype = x.dtype if isinstance(x, torch.Tensor) else ""
        raise ValueError(f"{what} must be a float image batch (B, C, H, W), got {dtype} {shape}")


def resolve_targets(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """(B,) class indices: the argmax for ``None``, one class for an int, or the given tensor."""
    batch, num_classes = logits.shape
    if target is None:
        return logits.argmax(1)
    if isinstance(target, int):
        target = torch.full((batch,), target, dtype=torch.long, device=logits.device)
    target = torch.as_tensor(target, device=logits.device).long().reshape(-1)
    if target.shape != (batch,):
        raise ValueError(f"target must be None, an int or a ({batch},) tensor of class indices, "
                         f"got shape {tuple(target.shape)}")
    if target.numel() and (target.min() < 0 or target.max() >= num_classes):
        raise ValueError(f"target classes must be in [0, {num_classes}), got "
                         f"{target.min().item()}..{target.max().item()}")
    return target


def class_score(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ_b logits[b, targets[b]]: examples are independent in eval mode, so one backward of the
    sum gives every example's own gradient."""
    if logits.ndim != 2:
        raise ValueError(f"attribution needs classifier logits (B, num_classes), got "
                         f"{tuple(logits.shape)}")
    return logits.gather(1, targets[:, None]).sum()


def input_gradients(model: nn.Module, x: torch.Tensor,
                    target: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂y_c/∂x (B, C, H, W), the targets used (B,))."""
    check_images(x)
    with evaluation_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        targets = resolve_targets(logits, target)
        (grad,) = torch.autograd.grad(class_score(logits, targets), x)
    return grad, targets


def saliency(model: nn.Module, x: torch.Tensor,
             target: int | torch.Tensor | None = None) -> torch.Tensor:
    """Vanilla gradient saliency (B, H, W): ``max_c |∂y_target/∂x_c|`` (Simonyan et al. 2014)."""
    grad, _ = input_gradients(model, x, target)
    return grad.abs().amax(1)


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) with Σ w f(α) ≈ ∫₀¹ f(α) dα, in float64.

    The trapezoid rule uses ``steps`` equally spaced points including both ends and step
    1/(steps-1), so the weights sum to 1 and completeness holds exactly for a linear model.
    (captum 0.9's ``riemann_trapezoid`` uses step 1/steps on the same points, which sums to
    1 - 1/steps: its result is ours times (steps-1)/steps.)
    """
    if method not in METHODS:
        raise ValueError(f"unknown integration method '{method}'; choose one of {METHODS}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    k = np.arange(steps, dtype=np.float64)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)  # on [-1, 1] -> map to [0, 1]
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return k / (steps - 1), weights
    offset = {"riemann_left": 0.0, "riemann_middle": 0.5, "riemann_right": 1.0}[method]
    return (k + offset) / steps, np.full(steps, 1.0 / steps)


def integrated_gradients(model: nn.Module, x: torch.Tensor,
                         target: int | torch.Tensor | None = None,
                         baseline: torch.Tensor | float | None = None, steps: int = 50,
                         method: str = "riemann_trapezoid", return_delta: bool = False
                         ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Integrated gradients (B, C, H, W) for the target class, baseline zeros by default.

    ``baseline`` may be a tensor broadcastable to ``x`` or a constant. ``return_delta`` also
    returns the completeness error per example, Σ attributions - (y_c(x) - y_c(baseline)), (B,).
    One forward/backward of the batch per step.
    """
    check_images(x)
    alphas, weights = quadrature(method, steps)
    base = torch.zeros_like(x) if baseline is None else torch.as_tensor(
        baseline, dtype=x.dtype, device=x.device).expand_as(x)
    x, base = x.detach(), base.detach()
    diff = x - base
    with evaluation_mode(model), torch.enable_grad():
        targets = resolve_targets(model(x).detach(), target)
        total = torch.zeros_like(x)
        for alpha, weight in zip(alphas.tolist(), weights.tolist()):
            point = (base + alpha * diff).requires_grad_(True)
            (grad,) = torch.autograd.grad(class_score(model(point), targets), point)
            total += weight * grad
    attributions = diff * total
    if not return_delta:
        return attributions
    with evaluation_mode(model), torch.no_grad():
        gap = (model(x).gather(1, targets[:, None]) - model(base).gather(1, targets[:, None]))[:, 0]
    return attributions, attributions.flatten(1).sum(1) - gap


def normalize_maps(maps: torch.Tensor, rtol: float = 1e-5) -> torch.Tensor:
    """Per-example min-max scaling of (B, H, W) maps to [0, 1].

    A map whose spread is within ``rtol`` of its magnitude is constant up to rounding (e.g. a
    1x1 map interpolated up) and becomes zeros instead of amplified rounding noise.
    """
    flat = maps.flatten(1)
    low, high = flat.amin(1)[:, None, None], flat.amax(1)[:, None, None]
    span = high - low
    varies = span > rtol * torch.maximum(low.abs(), high.abs())
    return torch.where(varies, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny),
                       torch.zeros_like(maps))


def heatmap(attributions: torch.Tensor, reduction: str = "abs_sum") -> torch.Tensor:
    """Collapse (B, C, H, W) attributions over channels to a (B, H, W) map in [0, 1].

    ``abs_sum`` (the usual choice for integrated gradients), ``abs_max`` (saliency's), or
    ``sum`` (signed evidence; min-max scaled, so 0 is the most negative pixel, not "no effect").
    """
    if attributions.ndim != 4:
        raise ValueError(f"attributions must be (B, C, H, W), got {tuple(attributions.shape)}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction '{reduction}'; choose one of {REDUCTIONS}")
    if reduction == "abs_sum":
        maps = attributions.abs().sum(1)
    elif reduction == "abs_max":
        maps = attributions.abs().amax(1)
    else:
        maps = attributions.sum(1)
    return normalize_maps(maps.detach())
