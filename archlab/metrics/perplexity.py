"""Perplexity of a language model: exp of the mean per-token negative log-likelihood.

The mean is over all non-padding tokens of all batches (not a mean of per-batch perplexities),
so it equals ``exp(F.cross_entropy(all_logits, all_targets, ignore_index=...))``.
``update(logits, target)``: ``logits`` (..., V) unnormalized scores, ``target`` (...) token ids;
positions whose target is ``ignore_index`` (padding) are skipped.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from archlab.metrics.base import METRICS, SummedStateMetric, class_scores


@METRICS.register("perplexity", inputs="scores")
class Perplexity(SummedStateMetric):
    """``{"ppl": exp(nll), "nll": mean token NLL in nats}``.

    State: ``nll_sum`` (float64, summed per-token NLL) and ``count`` (int64, tokens).
    """

    def __init__(self, ignore_index: int = -100) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float64))
        self.add_state("count", torch.zeros((), dtype=torch.int64))

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self._follow(target.device)
        scores, tokens = class_scores(logits, target, self.ignore_index)  # (N, V), (N,)
        # Per-token losses summed in float64: a float32 running sum drifts over an epoch.
        nll = F.cross_entropy(scores.float(), tokens, reduction="none")
        self.nll_sum += nll.double().sum()
        self.count += tokens.numel()

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError("perplexity: no (non-padding) tokens seen; call update() first")
        nll = (self.nll_sum / self.count).item()
        return {"ppl": math.exp(nll), "nll": nll}
