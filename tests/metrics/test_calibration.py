"""Expected calibration error against a direct numpy implementation of Guo et al. 2017."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.metrics import build_metric


def numpy_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> tuple[float, float]:
    """Guo et al. eq. 3 and 5, bins ((m-1)/M, m/M], written independently of the metric."""
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece, mce = 0.0, 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
            ece += in_bin.mean() * gap
            mce = max(mce, gap)
    return ece, mce


@pytest.mark.parametrize("n_bins", [5, 15])
def test_ece_matches_numpy_reference(n_bins):
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(200, 4, generator=g) * 3, torch.randint(0, 4, (200,), generator=g)
    metric = build_metric("ece", n_bins=n_bins)
    metric.update(logits, target)
    out = metric.compute()
    ece, mce = numpy_ece(logits.double().softmax(1).numpy(), target.numpy(), n_bins)
    assert out["ece"] == pytest.approx(ece, abs=1e-12)
    assert out["mce"] == pytest.approx(mce, abs=1e-12)
    assert out["ece"] > 0.1  # random labels: overconfident, far from calibrated


def test_ece_accepts_probabilities():
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(50, 3, generator=g).softmax(1)
    target = torch.randint(0, 3, (50,), generator=g)
    metric = build_metric("ece", n_bins=10, from_logits=False)
    metric.update(probs, target)
    assert metric.compute()["ece"] == pytest.approx(
        numpy_ece(probs.double().numpy(), target.numpy(), 10)[0], abs=1e-12)


def test_perfectly_calibrated_predictions_have_zero_ece():
    # Binary predictions with confidence c = k/8; exactly round(8c) of every 8 are right.
    probs, labels = [], []
    for k in range(4, 9):
        c = k / 8
        for i in range(8):
            probs.append([c, 1 - c])
            labels.append(0 if i < k else 1)
    probs, labels = torch.tensor(probs, dtype=torch.float64), torch.tensor(labels)
    metric = build_metric("ece", n_bins=8, from_logits=False)
    metric.update(probs, labels)
    out = metric.compute()
    assert out["ece"] == pytest.approx(0.0, abs=1e-12)
    assert out["mce"] == pytest.approx(0.0, abs=1e-12)
    diagram = metric.reliability()
    used = diagram["count"] > 0
    torch.testing.assert_close(diagram["accuracy"][used], diagram["confidence"][used])
    # Flip one correct prediction at confidence 1: that bin's gap becomes 1/8.
    labels[-1] = 1
    metric.reset()
    metric.update(probs, labels)
    assert metric.compute()["mce"] == pytest.approx(1 / 8)
    assert metric.compute()["ece"] == pytest.approx(1 / 40)  # 8/40 examples * 1/8
