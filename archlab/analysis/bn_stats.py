"""BatchNorm running statistics against the data: do eval-mode layers normalize what they see?

In train mode BatchNorm normalizes with the batch's own mean and variance; in eval mode with the
running estimates, an EMA that starts at mean 0 / variance 1 and moves by ``momentum`` (0.1) a
step (Ioffe & Szegedy 2015). When the real variance of a layer's input is far from 1 (GoogLeNet's
std-0.01 initialization gives ~1e-3) and training is short, the running variance is still
mostly its initial 1: after ``s`` steps its initial weight is 0.9^s (0.15 after 18 steps), the
eval-mode layer scales its input down by sqrt(150), the next layers compound it, and the network
predicts one class while its train-mode accuracy is fine. Small batches, distribution shift
between training and evaluation data, and frozen or reset statistics show the same way.

This tracker hooks the BatchNorm layers during a validation pass (no extra forward pass) and
accumulates, per channel, the mean and variance of each layer's input over the whole pass (in
float64 sums). Per layer it reports

* ``var_ratio`` — the geometric mean over channels of running_var / data_var: 1 when the
  running variance matches the data, 150 in the example above;
* ``mean_shift`` — the mean over channels of |running_mean - data_mean| / sqrt(data_var + eps),
  the offset eval mode adds, in units of the data's standard deviation;
* ``channels``.

::

    tracker = BatchNormStats(model)
    with tracker:
        for batch in val_loader:
            model(batch["x"])
    tracker.results()["conv1.bn"]  # {"var_ratio": 150.2, "mean_shift": 0.01, "channels": 64}
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from archlab.analysis.grad_flow import GradientFlowWarning
from archlab.analysis.hooks import ModuleHooks


class BatchNormStatsWarning(GradientFlowWarning):
    """Eval-mode BatchNorm normalizes with running statistics far from the data's. (A kind of
    training-diagnostic warning: filtering GradientFlowWarning, the family's base, catches it.)"""


def batchnorm_modules(model: nn.Module) -> dict[str, _BatchNorm]:
    """Every BatchNorm layer (1d/2d/3d, SyncBatchNorm) that keeps running statistics."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats}


class BatchNormStats(ModuleHooks):
    """Accumulates the per-channel statistics of every BatchNorm layer's input while attached."""

    def __init__(self, model: nn.Module) -> None:
        self.modules = batchnorm_modules(model)
        # name -> (count, sum (C,), sum of squares (C,)), float64 on the input's device
        self._sums: dict[str, tuple[int, torch.Tensor, torch.Tensor]] = {}
        self._running: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # (mean, var)

    def _register(self):
        return [m.register_forward_pre_hook(self._hook(n)) for n, m in self.modules.items()]

    def reset(self) -> None:
        self._sums, self._running = {}, {}

    def _hook(self, name: str):
        def hook(module, inputs):
            if inputs and isinstance(inputs[0], torch.Tensor):
                if name not in self._running and module.running_var is not None:
                    # The statistics this pass normalizes with, read when it uses them: a
                    # callback (EMA) may swap weights and buffers back before results().
                    self._running[name] = (module.running_mean.detach().double().clone(),
                                           module.running_var.detach().double().clone())
                self._accumulate(name, inputs[0].detach())
        return hook

    @torch.no_grad()
    def _accumulate(self, name: str, x: torch.Tensor) -> None:
        # Channels are dim 1 for every BatchNorm: (B, C), (B, C, L), (B, C, H, W), (B, C, D, H, W).
        reduce = [d for d in range(x.ndim) if d != 1]
        x = x.double()
        count = x.numel() // x.shape[1]
        n, s, q = self._sums.get(name, (0, 0.0, 0.0))
        self._sums[name] = (n + count, s + x.sum(reduce), q + (x * x).sum(reduce))

    def results(self) -> dict[str, dict[str, float]]:
        """name -> ``var_ratio``, ``mean_shift``, ``channels`` for the layers that ran."""
        out = {}
        for name, module in self.modules.items():
            if name not in self._sums or name not in self._running:
                continue
            n, s, q = self._sums[name]
            mean = s / n
            var = (q / n - mean * mean).clamp_min(0.0)  # population variance, as BN's batch var
            running_mean, running_var = (t.to(var.device) for t in self._running[name])
            eps = module.eps
            # eps on both sides: a channel with (near) zero variance must not make it infinite.
            log_ratio = torch.log((running_var + eps) / (var + eps))
            shift = (running_mean - mean).abs() / torch.sqrt(var + eps)
            out[name] = {"var_ratio": math.exp(log_ratio.mean().item()),
                         "mean_shift": shift.mean().item(), "channels": int(var.numel())}
        return out


def check_batchnorm_stats(layers: dict[str, dict[str, float]],
                          var_ratio: float | None = 10.0) -> list[str]:
    """A message when some layer's running variance is off from the data's by more than a
    factor ``var_ratio`` either way (``None``: never); it names the worst layer."""
    if var_ratio is None or not layers:
        return []
    if not var_ratio > 1:
        raise ValueError(f"bn_var_ratio must be > 1 (a factor either way), got {var_ratio}")
    worst = max(layers, key=lambda n: abs(math.log(layers[n]["var_ratio"])))
    ratio = layers[worst]["var_ratio"]
    off = [n for n, v in layers.items() if abs(math.log(v["var_ratio"])) > math.log(var_ratio)]
    if not off:
        return []
    return [f"batchnorm statistics: in {len(off)} of {len(layers)} BatchNorm layers the running "
            f"variance is more than {var_ratio:g}x off from the variance of the data they see "
            f"in eval mode (worst '{worst}': running/data = {ratio:.3g}); eval-mode outputs "
            f"then differ from train mode's. Usual causes: too few training steps for the "
            f"running averages (train longer or use smaller batches), train/eval data shift, "
            f"or reset/frozen statistics"]


__all__ = ["BatchNormStats", "BatchNormStatsWarning", "batchnorm_modules",
           "check_batchnorm_stats"]
