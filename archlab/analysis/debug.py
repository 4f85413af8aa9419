"""Debugging a network before trusting its curves: gradient check, overfit one batch, summary.

* :func:`gradient_check`: central finite differences in float64 against autograd for every
  input and parameter of any module, the check that catches a custom ``autograd.Function``
  whose backward is wrong. It checks the vector-Jacobian product vᵀJ for one fixed random v
  (so one backward and 2 forwards per checked element instead of a full Jacobian), which
  differs from the truth for almost every v when any Jacobian entry is wrong.
* :func:`overfit_one_batch`: Karpathy's "overfit a single batch" (A Recipe for Training Neural
  Networks, 2019): a model and loss that are wired correctly drive the loss on one small batch
  to ~0 and accuracy to 100%; if they cannot, look for a bug before tuning anything.
* :func:`parameter_summary`: name, shape, numel, mean, std and gradient norm per parameter.

::

    report = gradient_check(MyLayer(), torch.randn(2, 3))
    print(report.table()); assert report.passed
    print(overfit_one_batch(model, x[:8], y[:8], steps=200))
    print(format_parameter_summary(parameter_summary(model)))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GradCheckEntry:
    name: str  # "input 0" or the parameter's name
    shape: tuple[int, ...]
    checked: int  # elements compared (all, or a random subset of max_elements)
    max_abs_error: float
    max_rel_error: float
    passed: bool


@dataclass
class GradCheckReport:
    entries: list[GradCheckEntry]
    atol: float
    rtol: float

    @property
    def passed(self) -> bool:
        return all(e.passed for e in self.entries)

    def failures(self) -> list[str]:
        return [e.name for e in self.entries if not e.passed]

    def table(self) -> str:
        rows = [f"{'tensor':<32} {'shape':<18} {'checked':>8} {'max abs err':>12} "
                f"{'max rel err':>12}  ok"]
        for e in self.entries:
            rows.append(f"{e.name:<32} {str(e.shape):<18} {e.checked:>8} {e.max_abs_error:>12.3e} "
                        f"{e.max_rel_error:>12.3e}  {'yes' if e.passed else 'NO'}")
        return "\n".join(rows)


def gradient_check(module: nn.Module, *inputs: torch.Tensor, eps: float = 1e-6,
                   atol: float = 1e-5, rtol: float = 1e-3, max_elements: int | None = None,
                   seed: int = 0) -> GradCheckReport:
    """Compare autograd with central differences ``(f(θ+ε) - f(θ-ε)) / 2ε`` in float64.

    Works on a float64 deep copy (the module and inputs are untouched). Every floating input
    and every parameter with ``requires_grad`` is checked; integer inputs pass through.
    An element passes when ``|numeric - analytic| <= atol + rtol·|numeric|`` (the criterion of
    ``torch.autograd.gradcheck``). ``max_elements`` checks a random subset per tensor (big
    layers); each evaluation reseeds the RNG, so dropout masks repeat and the check stays valid.
    """
    if not inputs:
        raise ValueError("gradient_check needs at least one input tensor")
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    net = copy.deepcopy(module).double()
    # a copy even when already float64: the check perturbs these tensors in place
    args = [t.detach().to(torch.float64, copy=True).contiguous().requires_grad_(True)
            if _is_float(t) else t for t in inputs]
    checked = [(f"input {i}", t) for i, t in enumerate(args) if _is_float(t)]
    checked += [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    if not checked:
        raise ValueError("nothing to check: no floating inputs and no trainable parameters")

    def outputs() -> list[torch.Tensor]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = net(*args)
        outs = out if isinstance(out, (tuple, list)) else [out]
        return [o for o in outs if isinstance(o, torch.Tensor) and o.dtype.is_floating_point]

    generator = torch.Generator().manual_seed(seed)
    probes = [torch.randn(o.shape, generator=generator, dtype=torch.float64).to(o.device)
              for o in outputs()]

    def objective() -> torch.Tensor:  # vᵀ f(θ): its gradient is the vector-Jacobian product
        return sum((o * v).sum() for o, v in zip(outputs(), probes))

    analytic = torch.autograd.grad(objective(), [t for _, t in checked], allow_unused=True)
    entries = []
    with torch.no_grad():
        for (name, tensor), grad in zip(checked, analytic):
            grad = torch.zeros_like(tensor) if grad is None else grad
            flat, grad_flat = tensor.view(-1), grad.reshape(-1)
            index = torch.arange(flat.numel())
            if max_elements is not None and flat.numel() > max_elements:
                index = torch.randperm(flat.numel(), generator=generator)[:max_elements]
            numeric = torch.empty(len(index), dtype=torch.float64)
            for j, i in enumerate(index.tolist()):
                original = flat[i].item()
                flat[i] = original + eps
                plus = objective().item()
                flat[i] = original - eps
                minus = objective().item()
                flat[i] = original
                numeric[j] = (plus - minus) / (2 * eps)
            exact = grad_flat[index.to(grad_flat.device)].cpu()
            abs_err = (numeric - exact).abs()
            scale = torch.maximum(numeric.abs(), exact.abs())
            rel_err = torch.where(scale > 0, abs_err / scale.clamp_min(1e-300),
                                  torch.zeros_like(abs_err))
            entries.append(GradCheckEntry(
                name, tuple(tensor.shape), len(index), abs_err.max().item(),
                rel_err.max().item(), bool((abs_err <= atol + rtol * numeric.abs()).all())))
    return GradCheckReport(entries, atol, rtol)


def _is_float(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dtype.is_floating_point


@dataclass
class OverfitReport:
    passed: bool  # loss below threshold and every example classified correctly
    steps: int  # optimisation steps taken (stops early once passed)
    final_loss: float
    accuracy: float
    losses: list[float] = field(repr=False, default_factory=list)

    def __str__(self) -> str:
        verdict = "can" if self.passed else "CANNOT"
        return (f"model {verdict} overfit one batch: loss {self.losses[0]:.4f} -> "
                f"{self.final_loss:.4f}, accuracy {self.accuracy:.2%} after {self.steps} steps")


def overfit_one_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 200,
                      lr: float = 1e-2, loss_threshold: float = 0.01,
                      optimizer: str = "adam") -> OverfitReport:
    """Train a deep copy of ``model`` on one batch with cross-entropy for up to ``steps`` steps.

    Accuracy is measured in eval mode (as it will be used); training stops as soon as the
    training loss is below ``loss_threshold`` and that accuracy is 100%. ``optimizer`` is
    "adam" or "sgd" (momentum 0.9).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"batch sizes differ: x has {x.shape[0]} examples, y {y.shape[0]}")
    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    else:
        raise ValueError(f"unknown optimizer '{optimizer}'; choose 'adam' or 'sgd'")
    losses, accuracy = [], 0.0
    for step in range(1, steps + 1):
        net.train()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if loss.item() < loss_threshold or step == steps:
            net.eval()
            with torch.no_grad():
                accuracy = (net(x).argmax(1) == y).double().mean().item()
            if loss.item() < loss_threshold and accuracy == 1.0:
                return OverfitReport(True, step, losses[-1], accuracy, losses)
    return OverfitReport(False, steps, losses[-1], accuracy, losses)


@dataclass
class ParameterRow:
    name: str
    shape: tuple[int, ...]
    numel: int
    mean: float
    std: float  # population std (ddof 0): defined for one-element tensors too
    grad_norm: float | None  # L2 norm of .grad; None before any backward
    trainable: bool


def parameter_summary(model: nn.Module) -> list[ParameterRow]:
    """One row per parameter, in registration order."""
    rows = []
    for name, p in model.named_parameters():
        data = p.detach().double()
        grad = None if p.grad is None else p.grad.detach().double().norm().item()
        rows.append(ParameterRow(name, tuple(p.shape), p.numel(), data.mean().item(),
                                 data.std(correction=0).item(), grad, p.requires_grad))
    return rows


def format_parameter_summary(rows: list[ParameterRow]) -> str:
    """A fixed-width table with a total line."""
    width = max([len(r.name) for r in rows] + [9])
    lines = [f"{'parameter':<{width}} {'shape':<20} {'numel':>10} {'mean':>11} {'std':>11} "
             f"{'grad norm':>11}"]
    for r in rows:
        grad = "-" if r.grad_norm is None else f"{r.grad_norm:.4e}"
        frozen = "" if r.trainable else "  (frozen)"
        lines.append(f"{r.name:<{width}} {str(r.shape):<20} {r.numel:>10,} {r.mean:>11.4e} "
                     f"{r.std:>11.4e} {grad:>11}{frozen}")
    total, trainable = sum(r.numel for r in rows), sum(r.numel for r in rows if r.trainable)
    lines.append(f"total {total:,} parameters ({trainable:,} trainable) in {len(rows)} tensors")
    return "\n".join(lines)
