"""AGC against a per-unit loop written from the paper's eq. 3; gradient noise against its
annealed variance; both wired through TrainConfig."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.runs.config import ConfigError, load_config
from archlab.train.gradient_transforms import (adaptive_clip_grad_, add_gradient_noise_,
                                               build_gradient_transforms, gradient_noise_std)
from archlab.train.trainer import TrainConfig


def agc_reference(weight: torch.Tensor, grad: torch.Tensor, lam: float, eps: float):
    """Brock et al. 2021 eq. 3, one unit (output row / channel) at a time, in float64."""
    out = grad.double().clone()
    w, g = weight.double(), grad.double()
    rows = [slice(None)] if w.ndim <= 1 else range(w.shape[0])
    for i in rows:
        w_norm = max(w[i].norm().item(), eps)
        g_norm = g[i].norm().item()
        if g_norm / w_norm > lam:
            out[i] = g[i] * (lam * w_norm / g_norm)
    return out


@pytest.mark.parametrize("shape", [(6, 4), (5, 3, 3, 3), (7,)])
def test_agc_matches_unitwise_reference(shape):
    gen = torch.Generator().manual_seed(0)
    w = nn.Parameter(torch.randn(shape, generator=gen))
    with torch.no_grad():
        w[0].mul_(1e-5)  # a near-zero unit: eps decides its bound
    # gradients of mixed sizes so some units are clipped and some are not
    scale = torch.logspace(-3, 1, shape[0]).view(-1, *([1] * (len(shape) - 1)))
    w.grad = torch.randn(shape, generator=gen) * scale
    expected = agc_reference(w.detach(), w.grad, lam=0.05, eps=1e-3)
    clipped_units = (~torch.isclose(expected, w.grad.double())).any()
    adaptive_clip_grad_([w], clip_factor=0.05, eps=1e-3)
    torch.testing.assert_close(w.grad.double(), expected, rtol=1e-5, atol=1e-7)
    assert clipped_units  # the case really exercises clipping


def test_agc_leaves_the_classifier_alone_and_clips_the_rest():
    from archlab.models import create_model

    model = create_model("cnn_tiny", num_classes=3, in_chans=1, img_size=8)
    for p in model.parameters():
        p.grad = torch.full_like(p, 100.0)  # far beyond any λ·||W||
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    (agc,) = build_gradient_transforms(model, TrainConfig(grad_clip_agc=0.01))
    agc(0)
    for name, p in model.named_parameters():
        if name.startswith("fc."):
            assert torch.equal(p.grad, before[name]), name
        else:
            assert (p.grad.abs() < before[name].abs()).all(), name


def test_gradient_noise_has_the_annealed_variance_and_is_reproducible():
    eta, gamma, step = 0.3, 0.55, 99
    expected_std = (eta / (1 + step) ** gamma) ** 0.5
    assert gradient_noise_std(step, eta, gamma) == pytest.approx(expected_std)
    p = nn.Parameter(torch.zeros(200_000))
    p.grad = torch.zeros_like(p)
    add_gradient_noise_([p], step=step, eta=eta, gamma=gamma, seed=3)
    noise = p.grad.clone()
    assert noise.mean().abs() < 5 * expected_std / 200_000 ** 0.5
    assert noise.std().item() == pytest.approx(expected_std, rel=0.01)
    p.grad.zero_()
    add_gradient_noise_([p], step=step, eta=eta, gamma=gamma, seed=3)
    assert torch.equal(p.grad, noise)  # same (seed, step) -> same noise on every rank / resume
    p.grad.zero_()
    add_gradient_noise_([p], step=step + 1, eta=eta, gamma=gamma, seed=3)
    assert not torch.equal(p.grad, noise)


def test_transforms_apply_in_order_value_norm_agc_noise():
    model = nn.Sequential(nn.Linear(3, 3))
    cfg = TrainConfig(grad_clip_value=0.5, grad_clip_norm=0.1, grad_clip_agc=0.2,
                      grad_noise_eta=0.01)
    assert len(build_gradient_transforms(model, cfg)) == 4
    model[0].weight.grad = torch.full((3, 3), 2.0)
    model[0].bias.grad = torch.full((3,), 2.0)
    transforms = build_gradient_transforms(model, TrainConfig(grad_clip_value=0.5,
                                                              grad_clip_norm=0.1))
    for t in transforms:
        t(0)
    # value clip to 0.5 first, then the total norm (12 entries of 0.5 -> sqrt(3)) scaled to 0.1
    expected = 0.5 * 0.1 / (12 * 0.25) ** 0.5
    torch.testing.assert_close(model[0].weight.grad, torch.full((3, 3), expected), rtol=1e-4,
                               atol=1e-7)


def test_config_rejects_bad_values():
    for bad in ("train.grad_clip_agc=0", "train.grad_noise_eta=-1", "train.agc_eps=0"):
        with pytest.raises(ConfigError) as info:
            load_config(None, [bad])
        assert bad.split("=")[0].split(".")[1] in str(info.value)
