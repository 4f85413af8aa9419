"""What happens to the gradient between backward and the optimizer step: clipping by value, by
global norm, adaptive (AGC), and annealed Gaussian noise.

The Trainer applies the list :func:`build_gradient_transforms` returns, in order, to unscaled
gradients once per optimizer step (after accumulation, and after SAM's second pass). Each
transform is a plain function of the step index so it is reproducible and exact on resume.

* Adaptive gradient clipping (Brock et al. 2021, "High-Performance Large-Scale Image Recognition
  Without Normalization", eq. 3): per unit i (a row of a Linear weight, an output channel of a
  conv kernel), if ||G_i|| / max(||W_i||, eps) > λ, rescale G_i to λ · max(||W_i||, eps) / ||G_i||.
  Clipping relative to the weight's own size keeps the relative update bounded, which is what
  lets NFNets train large batches without BatchNorm. The paper leaves the final classifier
  unclipped; so does :func:`build_gradient_transforms` (``get_classifier()``'s parameters).
* Gradient noise (Neelakantan et al. 2015, "Adding Gradient Noise Improves Learning for Very
  Deep Networks", section 2): g ← g + N(0, σ_t²) with σ_t² = η / (1 + t)^γ, γ = 0.55 and
  η ∈ {0.01, 0.3, 1.0} in the paper. The noise is drawn from a generator seeded by (seed, t), so
  every DDP rank adds the same noise to its (already all-reduced) gradient and weights stay equal.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

GradientTransform = Callable[[int], None]  # called with the optimizer step index t


def unitwise_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per output unit, broadcastable to ``x``: over dims 1.. for matrices and kernels
    (out, in, *k) -> (out, 1, ...); vectors and scalars (biases, gains) count as one unit, as in
    the NFNet reference implementation."""
    if x.ndim <= 1:
        return torch.linalg.vector_norm(x)
    return torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[torch.Tensor], clip_factor: float,
                        eps: float = 1e-3) -> None:
    """Adaptive gradient clipping in place (Brock et al. 2021): unit-wise
    ||G_i|| <= clip_factor * max(||W_i||, eps). ``eps`` keeps zero-initialized weights (biases,
    zero-init residual gains) from freezing."""
    if clip_factor <= 0 or eps <= 0:
        raise ValueError(f"AGC needs clip_factor > 0 and eps > 0, got {clip_factor}, {eps}")
    for p in parameters:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p.detach()).clamp_min(eps) * clip_factor
        grad_norm = unitwise_norm(p.grad.detach())
        # scale = min(1, max_norm / ||G_i||); the floor only avoids 0/0 for zero gradients
        scale = (max_norm / grad_norm.clamp_min(1e-12)).clamp(max=1.0)
        p.grad.mul_(scale.to(p.grad.dtype))


def gradient_noise_std(step: int, eta: float, gamma: float = 0.55) -> float:
    """σ_t = sqrt(η / (1 + t)^γ) (Neelakantan et al. 2015)."""
    return (eta / (1.0 + step) ** gamma) ** 0.5


@torch.no_grad()
def add_gradient_noise_(parameters: Iterable[torch.Tensor], step: int, eta: float,
                        gamma: float = 0.55, seed: int = 0) -> None:
    """Add N(0, σ_t²) to every gradient in place, reproducibly for a given (seed, step)."""
    std = gradient_noise_std(step, eta, gamma)
    generators: dict[torch.device, torch.Generator] = {}
    for p in parameters:
        if p.grad is None:
            continue
        gen = generators.get(p.grad.device)
        if gen is None:
            gen = torch.Generator(device=p.grad.device)
            gen.manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63))
            generators[p.grad.device] = gen
        noise = torch.randn(p.grad.shape, generator=gen, device=p.grad.device,
                            dtype=torch.float32)
        p.grad.add_(noise.to(p.grad.dtype), alpha=std)


def _classifier_params(model: nn.Module) -> set[int]:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    return {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()


def build_gradient_transforms(model: nn.Module, cfg, seed: int = 0,
                              extra_params: Iterable[torch.Tensor] = ()
                              ) -> list[GradientTransform]:
    """The transforms ``cfg`` (a TrainConfig) switches on, in the order they apply:
    value clipping, norm clipping, AGC, then noise (so the noise is not clipped away).
    ``extra_params`` are trainable tensors outside the model (e.g. center-loss centers)."""
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params)
    transforms: list[GradientTransform] = []
    if cfg.grad_clip_value is not None:
        transforms.append(lambda t: nn.utils.clip_grad_value_(params, cfg.grad_clip_value))
    if cfg.grad_clip_norm is not None:
        transforms.append(lambda t: nn.utils.clip_grad_norm_(params, cfg.grad_clip_norm))
    if cfg.grad_clip_agc is not None:
        head = _classifier_params(model)
        clipped = [p for p in params if id(p) not in head]
        transforms.append(lambda t: adaptive_clip_grad_(clipped, cfg.grad_clip_agc, cfg.agc_eps))
    if cfg.grad_noise_eta is not None:
        transforms.append(lambda t: add_gradient_noise_(params, t, cfg.grad_noise_eta,
                                                        cfg.grad_noise_gamma, seed))
    return transforms
