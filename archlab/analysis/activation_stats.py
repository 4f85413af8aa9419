"""Activation statistics per layer: mean, std, sparsity, saturation and histograms.

Forward hooks on chosen modules summarise each output as it is produced and keep only a few
numbers (running float64 sums on the output's device), never the tensor itself, so watching a
layer costs no memory beyond them. Attach the hooks only around the forward passes you want to
measure; detached, they cost nothing::

    stats = ActivationStats(model, histogram_bins=50)
    with stats:                      # attach ... detach
        model(x)
    stats.results()["blocks.0.2"]    # {"mean": .., "std": .., "sparsity": .., "saturation": ..}
    stats.histograms()["blocks.0.2"] # {"counts": [...], "min": .., "max": ..}

Statistics cover every element of every output seen since the last :meth:`reset` (all examples,
channels and positions); ``std`` is the population std (ddof=0). ``saturation`` is the fraction
near the asymptotes where the derivative all but vanishes (LeCun et al. 1998, "Efficient
BackProp"; Glorot & Bengio 2010): sigmoid ``y < eps or y > 1 - eps``, tanh ``|y| > 1 - eps``;
it is omitted for activations without two flat asymptotes. A histogram is taken from the first
output seen after a reset (one batch), over that output's own finite range.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from archlab.analysis.hooks import ModuleHooks

#: Elementwise activation modules watched by default; archlab.layers.activations builds these.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink)


def activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every activation module of ``model`` by qualified name, in registration order; a model
    built only from functional activations (``F.relu``) gets its leaf modules instead."""
    acts = {n: m for n, m in model.named_modules() if isinstance(m, ACTIVATION_TYPES)}
    if acts:
        return acts
    return {n: m for n, m in model.named_modules()
            if n and not any(True for _ in m.children()) and not isinstance(m, nn.Identity)}


def _saturation_kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.Sigmoid):
        return "sigmoid"
    if isinstance(module, nn.Tanh):
        return "tanh"
    return None


def select_modules(model: nn.Module, modules: Mapping[str, nn.Module] | Iterable[str] | None,
                   default) -> dict[str, nn.Module]:
    """Resolve ``modules`` (None -> ``default(model)``; names -> looked up in ``model``)."""
    if modules is None:
        return default(model)
    if isinstance(modules, Mapping):
        return dict(modules)
    if isinstance(modules, str):
        raise TypeError(f"modules must be a list of module names, got the string {modules!r}")
    named = dict(model.named_modules())
    chosen = {}
    for name in modules:
        if name not in named:
            raise ValueError(f"no module named '{name}' in {type(model).__name__}; some valid "
                             f"names: {', '.join(list(n for n in named if n)[:12])}")
        chosen[name] = named[name]
    return chosen


class ActivationStats(ModuleHooks):
    """Removable forward hooks that accumulate output statistics for each watched module.

    ``modules``: a mapping name -> module, a list of module names, or None for
    :func:`activation_modules`. ``saturation_eps``: distance to an asymptote that counts as
    saturated. ``histogram_bins``: 0 for no histograms.
    """

    def __init__(self, model: nn.Module,
                 modules: Mapping[str, nn.Module] | Iterable[str] | None = None, *,
                 saturation_eps: float = 0.01, histogram_bins: int = 0) -> None:
        if not 0.0 < saturation_eps < 0.5:
            raise ValueError(f"saturation_eps must lie in (0, 0.5), got {saturation_eps}")
        if histogram_bins < 0:
            raise ValueError(f"histogram_bins must be >= 0 (0 = no histograms), got "
                             f"{histogram_bins}")
        self.modules = select_modules(model, modules, activation_modules)
        self.saturation_eps, self.histogram_bins = saturation_eps, histogram_bins
        self.reset()

    # ------------------------------------------------------------------ hooks
    def _register(self):
        return [m.register_forward_hook(self._hook(name, _saturation_kind(m)))
                for name, m in self.modules.items()]

    def reset(self) -> None:
        # name -> float64 (4,) on the output's device: sum, sum of squares, zeros, saturated
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, int] = {}
        self._hists: dict[str, tuple[torch.Tensor, float, float]] = {}
        self._saturating: dict[str, bool] = {}

    def _hook(self, name: str, saturation: str | None):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                self._accumulate(name, saturation, output.detach())
        return hook

    @torch.no_grad()
    def _accumulate(self, name: str, saturation: str | None, y: torch.Tensor) -> None:
        y = y.float()
        eps = self.saturation_eps
        if saturation == "sigmoid":
            saturated = ((y < eps) | (y > 1.0 - eps)).sum()
        elif saturation == "tanh":
            saturated = (y.abs() > 1.0 - eps).sum()
        else:
            saturated = y.new_zeros(())
        # Sums rather than per-batch means so accumulated micro-batches weigh by their size.
        row = torch.stack([y.sum(dtype=torch.float64), y.square().sum(dtype=torch.float64),
                           (y == 0).sum().double(), saturated.double()])
        self._sums[name] = self._sums[name] + row if name in self._sums else row
        self._counts[name] = self._counts.get(name, 0) + y.numel()
        self._saturating[name] = saturation is not None
        if self.histogram_bins and name not in self._hists:
            finite = y[torch.isfinite(y)]
            if finite.numel():
                lo, hi = (v.item() for v in torch.aminmax(finite))
                if lo == hi:  # the range torch.histc itself would use for constant input
                    lo, hi = lo - 1.0, hi + 1.0
                self._hists[name] = (torch.histc(finite, self.histogram_bins, lo, hi), lo, hi)

    # ------------------------------------------------------------------ results
    def results(self) -> dict[str, dict[str, float]]:
        """name -> mean, std, sparsity (fraction exactly zero) and, for sigmoid/tanh,
        saturation; in module order, only for modules that produced an output."""
        names = [n for n in self.modules if n in self._sums]
        if not names:
            return {}
        rows = torch.stack([self._sums[n].cpu() for n in names]).tolist()
        out = {}
        for name, (s, sq, zeros, saturated) in zip(names, rows):
            n = self._counts[name]
            mean = s / n
            # E[y^2] - E[y]^2 in float64; clamp the rounding residue of a constant output.
            entry = {"mean": mean, "std": max(sq / n - mean * mean, 0.0) ** 0.5,
                     "sparsity": zeros / n}
            if self._saturating[name]:
                entry["saturation"] = saturated / n
            out[name] = entry
        return out

    def histograms(self) -> dict[str, dict]:
        """name -> ``{"counts": [...], "min": lo, "max": hi}`` (equal-width bins over
        [lo, hi], as ``torch.histc``)."""
        out = {}
        for name in self.modules:
            if name in self._hists:
                counts, lo, hi = self._hists[name]
                out[name] = {"counts": counts.cpu().tolist(), "min": lo, "max": hi}
        return out
