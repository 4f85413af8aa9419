"""Weight norms and update-to-weight ratios per layer.

The ratio ``||W_after - W_before|| / ||W_before||`` of one optimizer step says whether a layer
learns at a sensible pace; around 1e-3 is the usual rule of thumb (Karpathy, CS231n "Babysitting
the learning process"): far below, the layer barely moves (lr too low, or vanishing
gradients); far above, it is being overwritten (lr too high). LARS (You et al. 2017) builds an
optimizer on this ratio. Usage around one step::

    updates = UpdateToWeightRatio(model)
    updates.snapshot()          # before optimizer.step()
    optimizer.step()
    updates.measure()["fc.weight"]   # {"norm": ||W_after||, "update_ratio": ...}

Only the step between ``snapshot`` and ``measure`` is measured; the copy of the weights lives
only between the two calls.
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def weight_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of every trainable parameter tensor, in registration (depth) order."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return {}
    norms = torch.stack([torch.linalg.vector_norm(p.detach(), dtype=torch.float64).cpu()
                         for _, p in named]).tolist()
    return {n: v for (n, _), v in zip(named, norms)}


class UpdateToWeightRatio:
    """Measures ``||ΔW|| / ||W_before||`` and ``||W_after||`` for every trainable parameter.

    A parameter whose norm before the step is exactly zero (e.g. a zero-initialised bias) gets
    ``update_ratio`` None: the ratio is undefined there.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"UpdateToWeightRatio needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self._before: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def pending(self) -> bool:
        """True between :meth:`snapshot` and :meth:`measure`."""
        return self._before is not None

    @torch.no_grad()
    def snapshot(self) -> None:
        """Copy the trainable weights (call right before ``optimizer.step()``)."""
        self._before = {n: (p.detach().clone(),
                            torch.linalg.vector_norm(p.detach(), dtype=torch.float64))
                        for n, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def measure(self) -> dict[str, dict[str, float | None]]:
        """Per parameter ``norm`` (after the step) and ``update_ratio``; frees the snapshot."""
        if self._before is None:
            raise RuntimeError("UpdateToWeightRatio.measure() needs a snapshot() before the "
                               "optimizer step")
        before, self._before = self._before, None
        params = dict(self.model.named_parameters())
        rows, names = [], []
        for name, (copy, norm_before) in before.items():
            p = params[name].detach()
            delta = copy.sub_(p)  # reuse the copy's memory: -(W_after - W_before)
            rows.append(torch.stack([torch.linalg.vector_norm(p, dtype=torch.float64),
                                     torch.linalg.vector_norm(delta, dtype=torch.float64),
                                     norm_before]).cpu())
            names.append(name)
        if not rows:
            return {}
        out = {}
        for name, (norm_after, delta, norm_before) in zip(names, torch.stack(rows).tolist()):
            out[name] = {"norm": norm_after,
                         "update_ratio": delta / norm_before if norm_before > 0 else None}
        return out
