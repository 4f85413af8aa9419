"""Perplexity = exp(mean token NLL), checked against torch's cross-entropy."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.metrics import build_metric


def test_perplexity_matches_exp_cross_entropy_with_padding():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 13, generator=g, dtype=torch.float64)
    target = torch.randint(0, 13, (3, 6), generator=g)
    target[0, 4:] = 0
    target[2, 1:] = 0  # pad id 0: padded rows are shorter, so a per-batch mean would be wrong
    metric = build_metric("perplexity", ignore_index=0)
    for b in range(3):  # one sequence per batch
        metric.update(logits[b:b + 1], target[b:b + 1])
    ref = F.cross_entropy(logits.reshape(-1, 13), target.reshape(-1), ignore_index=0)
    out = metric.compute()
    assert out["nll"] == pytest.approx(ref.item(), rel=1e-6)
    assert out["ppl"] == pytest.approx(math.exp(ref.item()), rel=1e-6)


def test_uniform_model_has_perplexity_equal_to_vocabulary_size():
    metric = build_metric("perplexity")
    metric.update(torch.zeros(2, 5, 37), torch.randint(0, 37, (2, 5)))
    assert metric.compute()["ppl"] == pytest.approx(37.0, rel=1e-6)


def test_perplexity_without_tokens_is_an_error():
    metric = build_metric("perplexity")
    metric.update(torch.zeros(1, 2, 4), torch.full((1, 2), -100))
    with pytest.raises(ValueError, match="no \\(non-padding\\) tokens"):
        metric.compute()
