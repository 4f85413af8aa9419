"""Lion: EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization
Algorithms", Algorithm 2).

Per parameter θ with gradient g and momentum m (the only state, half of Adam's)::

    c = β1 m + (1 - β1) g                  # interpolation used for the update
    θ = θ - lr (sign(c) + λ θ)             # decoupled weight decay, as AdamW
    m = β2 m + (1 - β2) g                  # momentum tracked with the slower β2

Every coordinate moves by exactly ±lr (plus decay), so the update norm is larger than Adam's:
the paper uses a 3-10x smaller lr and a 3-10x larger λ than AdamW for the same lr·λ.

    opt = Lion(model.parameters(), lr=1e-4, betas=(0.9, 0.99), weight_decay=1.0)
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if lr <= 0.0:
            raise ValueError(f"Lion lr must be > 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas) or len(betas) != 2:
            raise ValueError(f"Lion betas must be two values in [0, 1), got {betas}")
        if weight_decay < 0.0:
            raise ValueError(f"Lion weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), wd = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m = state["exp_avg"]
                c = m.mul(beta1).add_(p.grad, alpha=1.0 - beta1)
                if wd != 0.0:
                    p.mul_(1.0 - lr * wd)
                p.add_(c.sign_(), alpha=-lr)
                m.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss
