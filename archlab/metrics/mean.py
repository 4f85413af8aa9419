"""The mean of a per-example (or per-token) quantity over a whole pass, e.g. a loss.

The state is (sum, count), so the mean over several batches or ranks is exact: it equals the
mean over their concatenation, not a mean of batch means.
"""

from __future__ import annotations

import torch

from archlab.metrics.base import METRICS, SummedStateMetric


@METRICS.register("mean", inputs="values")
class MeanMetric(SummedStateMetric):
    """``{key: sum(values) / count}``; ``update(values)`` takes the per-example values."""

    def __init__(self, key: str = "mean") -> None:
        super().__init__()
        self.key = key
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, values: torch.Tensor) -> None:
        self._follow(values.device)
        self.total += values.detach().double().sum()
        self.count += values.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError(f"{self.key}: no values seen (the evaluation data was empty)")
        return {self.key: (self.total / self.count).item()}
