"""Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks").

Predictions are grouped by confidence (the top softmax probability) into ``n_bins`` equal-width
bins I_m = ((m-1)/M, m/M]; then (Guo et al. eq. 3, 5)

    ECE = sum_m |B_m| / n * |acc(B_m) - conf(B_m)|,    MCE = max_m |acc(B_m) - conf(B_m)|

over non-empty bins. Guo et al. use M = 15. ``update(preds, target)``: ``preds`` are (..., C)
logits (``from_logits=True``) or probabilities, ``target`` (...) class indices.
"""

from __future__ import annotations

import torch

from archlab.metrics.base import METRICS, SummedStateMetric, class_scores


@METRICS.register("ece", inputs="scores")
class ExpectedCalibrationError(SummedStateMetric):
    """``{"ece": ..., "mce": ...}`` in [0, 1]; :meth:`reliability` gives the per-bin numbers for a
    reliability diagram.

    State: ``bins`` (3, n_bins) float64 = per bin (count, sum of confidences, number correct).
    """

    def __init__(self, n_bins: int = 15, from_logits: bool = True,
                 ignore_index: int | None = None) -> None:
        super().__init__()
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins, self.from_logits, self.ignore_index = n_bins, from_logits, ignore_index
        self.add_state("bins", torch.zeros(3, n_bins, dtype=torch.float64))

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        scores, true = class_scores(preds, target, self.ignore_index)
        probs = scores.double().softmax(-1) if self.from_logits else scores.double()
        conf, pred = probs.max(-1)
        # Right-closed bins (edge_m, edge_{m+1}]: bucketize with right=False does exactly that.
        inner = self._edges(conf.device)[1:-1]
        index = torch.bucketize(conf, inner, right=False)  # (N,) in [0, n_bins)
        rows = torch.stack([torch.ones_like(conf), conf, (pred == true).double()])  # (3, N)
        self.bins.index_add_(1, index, rows)

    def _edges(self, device: torch.device | None = None) -> torch.Tensor:
        return torch.linspace(0, 1, self.n_bins + 1, dtype=torch.float64, device=device)

    def reliability(self) -> dict[str, torch.Tensor]:
        """Per bin: ``count``, mean ``confidence`` and ``accuracy`` (0 for empty bins), and the
        bin ``edges`` (n_bins + 1,)."""
        count, conf_sum, correct = self.bins
        safe = count.clamp_min(1)
        return {"count": count.clone(), "confidence": conf_sum / safe, "accuracy": correct / safe,
                "edges": self._edges(count.device)}

    def compute(self) -> dict[str, float]:
        count, conf_sum, correct = self.bins
        n = count.sum()
        if n == 0:
            raise ValueError("ece: compute() called before any update()")
        # |B_m|/n * |acc_m - conf_m| = |correct_m - conf_sum_m| / n
        ece = (correct - conf_sum).abs().sum() / n
        gap = ((correct - conf_sum).abs() / count.clamp_min(1))[count > 0]
        return {"ece": ece.item(), "mce": gap.max().item()}
