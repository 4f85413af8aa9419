"""Dead units: ReLU-family units that output exactly zero for every example of a data pass, and
never-positive units of any rectifier.

A ReLU whose pre-activation is negative for every input passes no gradient and never recovers
("dying ReLU", Lu et al. 2019; Maas et al. 2013 motivate Leaky ReLU with it). Leaky ReLU, PReLU,
ELU, SELU, GELU, SiLU and Mish cannot output exactly zero, so they cannot die in that sense, but a
unit of theirs can still sit in the negative regime for every input (output never > 0), where
it passes only a small gradient. Both are counted: ``dead`` (exactly zero throughout; ReLU
family only) and ``never_positive`` (output never above zero; for ReLU it equals ``dead``), so
an activation-function study can compare every rectifier on one measure. A *unit* is a
channel of a conv output ``(B, C, *spatial)`` — dead if it is zero at every position of every
example — or a feature of ``(B, F)`` and token outputs ``(B, L, D)`` (the last dim).

Hook a validation pass; it costs no extra forward pass and keeps one boolean per unit::

    counter = DeadUnitCounter(model)
    with counter:
        for batch in val_loader:
            model(batch["x"])
    counter.results()["stages.0.0.3"]
    # {"dead_fraction": 0.25, "dead": 4, "never_positive_fraction": 0.25, "never_positive": 4,
    #  "units": 16}
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from archlab.analysis.activation_stats import select_modules
from archlab.analysis.hooks import ModuleHooks

#: Activations with an exactly-zero region, where a unit can die.
DEAD_CAPABLE_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardswish,
                                                   nn.Hardsigmoid)


#: Rectifiers without an exactly-zero region whose output is positive exactly when the input is:
#: "never positive" means the unit's pre-activation was never positive.
NEGATIVE_REGIME_TYPES: tuple[type[nn.Module], ...] = (nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU,
                                                      nn.CELU, nn.GELU, nn.SiLU, nn.Mish)


def relu_family_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every ReLU-family activation module of ``model`` by name, in registration order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, DEAD_CAPABLE_TYPES)}


def rectifier_modules(model: nn.Module) -> dict[str, nn.Module]:
    """ReLU-family and the other rectifiers (:data:`NEGATIVE_REGIME_TYPES`), by name."""
    kinds = DEAD_CAPABLE_TYPES + NEGATIVE_REGIME_TYPES
    return {n: m for n, m in model.named_modules() if isinstance(m, kinds)}


def unit_dim(output: torch.Tensor) -> int:
    """The axis that indexes units: channels (dim 1) of 4-d/5-d conv maps, the last dim of
    (B, F) features and (B, L, D) token sequences (archlab's sequence models are batch-first)."""
    if output.ndim < 2:
        raise ValueError(f"dead-unit counting needs a batched output (B, ...), got shape "
                         f"{tuple(output.shape)}")
    return 1 if output.ndim >= 4 else output.ndim - 1


class DeadUnitCounter(ModuleHooks):
    """Removable forward hooks recording, per watched module, which units were ever non-zero.

    ``modules``: mapping name -> module, list of module names, or None for every rectifier
    (:func:`rectifier_modules`).
    """

    def __init__(self, model: nn.Module,
                 modules: Mapping[str, nn.Module] | Iterable[str] | None = None) -> None:
        self.modules = select_modules(model, modules, rectifier_modules)
        self.reset()

    def _register(self):
        return [m.register_forward_hook(self._hook(name)) for name, m in self.modules.items()]

    def reset(self) -> None:
        # name -> (units,) bool, on the output device: ever non-zero / ever positive
        self._alive: dict[str, torch.Tensor] = {}
        self._positive: dict[str, torch.Tensor] = {}

    def _hook(self, name: str):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor):
                self._accumulate(name, output.detach())
        return hook

    @torch.no_grad()
    def _accumulate(self, name: str, y: torch.Tensor) -> None:
        dim = unit_dim(y)
        others = tuple(d for d in range(y.ndim) if d != dim)
        alive, positive = (y != 0).any(dim=others), (y > 0).any(dim=others)  # (units,) each
        previous = self._alive.get(name)
        if previous is None:
            self._alive[name], self._positive[name] = alive, positive
        elif previous.shape != alive.shape:
            raise ValueError(f"module '{name}' produced {alive.numel()} units in one call and "
                             f"{previous.numel()} in another; dead-unit counting needs a fixed "
                             f"unit count per module")
        else:
            previous |= alive
            self._positive[name] |= positive

    def results(self) -> dict[str, dict[str, float]]:
        """name -> ``dead_fraction``, ``dead`` (count), ``never_positive_fraction``,
        ``never_positive`` (count), ``units`` and ``zero_region`` (whether the module can
        output exactly zero, i.e. whether ``dead`` means anything), for modules that ran."""
        out = {}
        for name in self.modules:
            if name in self._alive:
                alive, units = self._alive[name], self._alive[name].numel()
                dead = int((~alive).sum())
                never = int((~self._positive[name]).sum())
                out[name] = {"dead_fraction": dead / units, "dead": dead,
                             "never_positive_fraction": never / units, "never_positive": never,
                             "units": units,
                             "zero_region": isinstance(self.modules[name], DEAD_CAPABLE_TYPES)}
        return out

    def dead_indices(self, name: str) -> list[int]:
        """Indices of the dead units of module ``name``."""
        if name not in self._alive:
            raise KeyError(f"module '{name}' has not produced an output since the last reset; "
                           f"recorded: {', '.join(self._alive) or 'none'}")
        return torch.nonzero(~self._alive[name]).flatten().tolist()
