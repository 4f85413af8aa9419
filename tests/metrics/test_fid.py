"""Fréchet distance against a direct scipy computation (the pytorch-fid formula)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from archlab.metrics import build_metric
from archlab.metrics.fid import frechet_distance
from archlab.models import create_model


def scipy_frechet(x: np.ndarray, y: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) with numpy moments and scipy's sqrtm."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root.real))


def _features(seed: int, n: int, d: int, shift: float, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(d, d, generator=g, dtype=torch.float64) * scale
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ mix + shift


@pytest.mark.parametrize("shift,scale", [(0.0, 1.0), (0.7, 1.0), (2.0, 0.3)])
def test_fid_matches_scipy(shift, scale):
    real, fake = _features(0, 200, 6, 0.0), _features(1, 150, 6, shift, scale)
    metric = build_metric("fid", num_features=6)
    for chunk in real.split(64):
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    ref = scipy_frechet(real.numpy(), fake.numpy())
    assert metric.compute()["fid"] == pytest.approx(ref, rel=1e-8, abs=1e-9)
    assert ref > 0.1


def test_identical_feature_sets_have_zero_distance():
    x = _features(2, 100, 8, 1.5)
    metric = build_metric("fid", num_features=8)
    metric.update(x, real=True)
    metric.update(x, real=False)
    assert metric.compute()["fid"] == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_known_gaussians():
    # Commuting covariances: Tr sqrt(S1 S2) = sum sqrt(a_i b_i).
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 1.0])
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 0.0])
    expected = 5.0 + (a + b - 2 * (a * b).sqrt()).sum().item()
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected)


def test_fid_extracts_pre_logits_features_from_an_archlab_model():
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, img_size=8, in_chans=1).eval()
    metric = build_metric("fid", model=model)
    real, fake = torch.rand(12, 1, 8, 8), torch.rand(10, 1, 8, 8) * 0.5
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.no_grad():
        f_real = model.forward_head(model.forward_features(real), pre_logits=True)
        f_fake = model.forward_head(model.forward_features(fake), pre_logits=True)
    assert f_real.shape[1] == model.num_features
    ours = metric.compute()["fid"]
    ref = build_metric("fid", num_features=model.num_features)
    ref.update(f_real, real=True)
    ref.update(f_fake, real=False)
    assert ours == pytest.approx(ref.compute()["fid"], rel=1e-6)


def test_fid_input_errors():
    with pytest.raises(ValueError, match="num_features"):
        build_metric("fid")
    metric = build_metric("fid", num_features=4)
    with pytest.raises(ValueError, match=r"\(B, 4\)"):
        metric.update(torch.zeros(3, 5), real=True)
    metric.update(torch.zeros(3, 4), real=True)
    with pytest.raises(ValueError, match="at least 2 generated samples"):
        metric.compute()
