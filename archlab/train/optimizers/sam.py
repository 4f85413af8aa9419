"""Sharpness-Aware Minimization (Foret et al. 2021) as a wrapper over any base optimizer.

SAM minimizes ``max_{||e|| <= rho} L(w + e)``. To first order the inner maximum is at
``e = rho g / ||g||`` (paper eq. 2); ASAM (Kwon et al. 2021, adaptive) measures the ball in
parameter-relative units, ``e = rho w^2 g / || |w| g ||``. The update then applies the base
optimizer at ``w`` with the gradient taken at ``w + e`` (paper Algorithm 1).

Plain use (two forward/backward passes per step)::

    sam = SAM(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), rho=0.05)
    loss_fn(model(x), y).backward()
    sam.first_step(zero_grad=True)          # w -> w + e, remembers w
    with frozen_norm_stats(model):          # BN statistics only from the unperturbed pass
        loss_fn(model(x), y).backward()
    sam.second_step(zero_grad=True)         # w restored exactly, base step with grad at w + e

or ``sam.step(closure)`` with a closure that runs forward and backward (it is called twice).

In a training loop with gradient accumulation, AMP and DDP the sequence per optimizer step is:

1. first pass: for each of the k micro-batches of the step, ``scaler.scale(loss / k).backward()``
   (under DDP optionally inside ``model.no_sync()``: each rank then perturbs with its own
   gradient, the paper's m-sharpness with m = per-rank batch, and one all-reduce is saved).
   Keep the (augmented) micro-batches: the second pass must see the same inputs.
2. ``sam.first_step(zero_grad=True)``. The perturbation ``g / ||g||`` is invariant to the loss
   scale, so no ``unscale_`` is needed here (GradScaler allows one ``unscale_`` per step, which
   belongs to the second pass). If the scaled gradient is not finite, ``first_step`` returns
   False and leaves the weights unperturbed: the second pass then computes an ordinary gradient
   at ``w``, and ``scaler.step`` skips the step if that overflows too.
3. second pass: the same k micro-batches, ``scaler.scale(loss / k).backward()`` inside
   ``frozen_norm_stats(model)``, with DDP synchronisation on (the base step needs the averaged
   gradient; the last micro-batch syncs as usual).
4. ``sam.restore()`` (weights back to the exact copy of ``w``, so DDP ranks stay identical even
   if they perturbed differently, and a skipped step leaves no perturbation behind), then the
   usual ``scaler.unscale_(sam)``, gradient clipping, ``scaler.step(sam)`` (which calls
   ``sam.step()`` = :meth:`second_step` unless the gradient overflowed), ``scaler.update()``,
   ``sam.zero_grad(set_to_none=True)``, ``scheduler.step()``.

``SAM`` shares ``param_groups`` with the base optimizer, so LR schedulers and GradScaler work on
it as on any optimizer. Its ``state_dict`` is the base optimizer's (the saved ``w`` only lives
between :meth:`first_step` and :meth:`restore`, never across a checkpoint).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    def __init__(self, base_optimizer: torch.optim.Optimizer, rho: float = 0.05,
                 adaptive: bool = False, eps: float = 1e-12) -> None:
        if not isinstance(base_optimizer, torch.optim.Optimizer):
            raise TypeError(f"SAM wraps a torch.optim.Optimizer instance, got "
                            f"{type(base_optimizer).__name__}")
        if rho <= 0.0:
            raise ValueError(f"SAM rho (radius of the neighbourhood) must be > 0, got {rho}")
        self.base_optimizer = base_optimizer
        super().__init__(base_optimizer.param_groups, base_optimizer.defaults)
        # One list of group dicts for both: a scheduler's lr change is seen by the base step.
        self.param_groups = base_optimizer.param_groups
        self.rho, self.adaptive, self.eps = rho, adaptive, eps
        self._perturbed = False  # weights currently hold w + e
        self._armed = False  # first_step done, base step pending

    def _params_with_grad(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"] if p.grad is not None]

    @torch.no_grad()
    def grad_norm(self) -> torch.Tensor:
        """``||g||`` (or ``|| |w| g ||`` when adaptive) over all parameters, in >= fp32."""
        params = self._params_with_grad()
        if not params:
            raise RuntimeError("SAM.first_step: no parameter has a gradient; run backward first")
        device, dtype = params[0].device, torch.float32  # at least fp32 for fp16/bf16 params
        for p in params:
            dtype = torch.promote_types(dtype, p.grad.dtype)
        norms = [torch.linalg.vector_norm((p.abs() * p.grad) if self.adaptive else p.grad,
                                          dtype=dtype).to(device) for p in params]
        return torch.linalg.vector_norm(torch.stack(norms))

    @torch.no_grad()
    def first_step(self, zero_grad: bool = True) -> bool:
        """Move to ``w + e``; returns False (no move) when the gradient is not finite."""
        if self._perturbed:
            raise RuntimeError("SAM.first_step called while weights are still perturbed; call "
                               "second_step() (or restore()) after the second backward")
        norm = self.grad_norm()
        finite = bool(torch.isfinite(norm))
        if finite:
            scale = self.rho / (norm + self.eps)
            for p in self._params_with_grad():
                self.state[p]["w"] = p.detach().clone()
                e = p.grad * scale.to(p.grad)
                if self.adaptive:
                    e.mul_(p.square())  # |w|^2 g: the ASAM ball is elementwise scaled by |w|
                p.add_(e)
            self._perturbed = True
        self._armed = True
        if zero_grad:
            self.zero_grad(set_to_none=True)
        return finite

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by :meth:`first_step` (exact copy; no-op if unperturbed)."""
        if self._perturbed:
            for group in self.param_groups:
                for p in group["params"]:
                    saved = self.state[p].pop("w", None)
                    if saved is not None:
                        p.copy_(saved)
            self._perturbed = False

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore ``w`` and take the base optimizer's step with the gradient at ``w + e``."""
        if not self._armed:
            raise RuntimeError("SAM.second_step/step() without closure must follow first_step()")
        self.restore()
        self.base_optimizer.step()
        self._armed = False
        if zero_grad:
            self.zero_grad(set_to_none=True)

    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None):
        """With a closure (forward + backward, gradients zeroed before the call): the full SAM
        step, returns the loss at ``w``. Without: :meth:`second_step` (for ``GradScaler.step``)."""
        if closure is None:
            self.second_step()
            return None
        with torch.enable_grad():
            loss = closure()
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)
        self.param_groups = self.base_optimizer.param_groups  # load replaced the group dicts


@contextlib.contextmanager
def frozen_norm_stats(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalize with batch statistics but leave their running statistics (and
    ``num_batches_tracked``) untouched inside; SAM's second forward runs at perturbed weights,
    whose activations should not enter the statistics used at evaluation."""
    tracked = [m for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in tracked:
        m.track_running_stats = False  # in train mode, BN then passes no running buffers
    try:
        yield
    finally:
        for m in tracked:
            m.track_running_stats = True
