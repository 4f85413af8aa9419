"""Gaussian and variational dropout: the KL approximation against numerical integration, the
noise's moments, the learned rate's dynamics, convert_dropout / variational_kl, and the
``model.dropout`` config end to end on real (tiny) data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn

from archlab.runs.config import load_config
from archlab.layers.variational_dropout import (DROPOUT_KINDS, GaussianDropout, VariationalDropout,
                                                convert_dropout, neg_kl_log_uniform,
                                                variational_kl)
from archlab.runs.experiment import build_model_and_data, build_penalty, run_experiment

# The exact -KL(α) tends to (γ + log 2) / 2 - C as α -> ∞ (E log|ε| = -(γ + log 2) / 2 for
# ε ~ N(0, 1)); Molchanov et al. fix C so that the limit is 0, so C = -(γ + log 2) / 2 ≈ -0.6352,
# which their fit rounds to -k1 = -0.63576.
C_LIMIT = -(np.euler_gamma + math.log(2.0)) / 2


def neg_kl_reference(alpha: float) -> float:
    """-KL(α) = 0.5 log α - E_{ε~N(0,1)} log|1 + √α ε| + C by adaptive quadrature (Molchanov et
    al. 2017, eq. 13 rewritten with ε = θ / (√α θ) noise); the log singularity at ε = -1/√α is
    an integration break point."""
    root = math.sqrt(alpha)
    density = stats.norm.pdf

    def integrand(e: float) -> float:
        return math.log(abs(1.0 + root * e)) * density(e)

    singular = -1.0 / root
    left, _ = integrate.quad(integrand, -np.inf, singular, limit=200)
    right, _ = integrate.quad(integrand, singular, np.inf, limit=200)
    return 0.5 * math.log(alpha) - (left + right) + C_LIMIT


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 0.5, 1.0, 3.0, 10.0, 100.0])
def test_neg_kl_matches_numerical_integration(alpha):
    approx = neg_kl_log_uniform(torch.tensor(math.log(alpha), dtype=torch.float64)).item()
    # Molchanov et al. state the fit is accurate to about 0.01 over all α
    assert approx == pytest.approx(neg_kl_reference(alpha), abs=0.01)


def test_neg_kl_is_elementwise_increasing_and_vanishes_for_large_alpha():
    log_alpha = torch.linspace(-8, 8, 50, dtype=torch.float64)
    values = neg_kl_log_uniform(log_alpha)
    assert values.shape == log_alpha.shape
    assert (values.diff() > 0).all()  # more noise, closer to the (noise-loving) prior
    assert abs(neg_kl_log_uniform(torch.tensor(20.0, dtype=torch.float64)).item()) < 1e-6


# ------------------------------------------------------------------------- Gaussian dropout
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_gaussian_dropout_has_the_moments_of_inverted_dropout(p):
    torch.manual_seed(0)
    n = 1_000_000
    out = GaussianDropout(p).train()(torch.ones(n, dtype=torch.float64))
    alpha = p / (1 - p)  # variance of inverted Bernoulli dropout's factor
    # std of the sample mean is sqrt(α / n) <= 1e-3; of the sample variance ≈ α sqrt(2 / n)
    assert out.mean().item() == pytest.approx(1.0, abs=6e-3)
    assert out.var().item() == pytest.approx(alpha, rel=0.01)
    # Gaussian, not Bernoulli: P(ξ < 0) = Φ(-1/√α)
    assert (out < 0).double().mean().item() == pytest.approx(
        stats.norm.cdf(-1 / math.sqrt(alpha)), abs=3e-3)


def test_gaussian_dropout_scales_each_element_independently_and_eval_is_identity():
    torch.manual_seed(0)
    x = torch.randn(64, 8, 4, 4)
    layer = GaussianDropout(0.4)
    ratio = layer.train()(x) / x
    assert ratio.flatten().unique().numel() > 0.99 * x.numel()  # one draw per element
    assert torch.equal(layer.eval()(x), x)
    assert torch.equal(GaussianDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        GaussianDropout(1.0)


# ------------------------------------------------------------------------- variational dropout
def test_variational_noise_variance_is_exp_log_alpha():
    torch.manual_seed(0)
    layer = VariationalDropout(0.5).train()
    with torch.no_grad():
        layer.log_alpha.fill_(math.log(0.2))
    out = layer(torch.ones(500_000, dtype=torch.float64))
    assert out.mean().item() == pytest.approx(1.0, abs=4e-3)
    assert out.var().item() == pytest.approx(0.2, rel=0.015)
    assert torch.equal(layer.eval()(out), out)


def test_variational_initial_rate_and_clamp_at_max_log_alpha():
    layer = VariationalDropout(0.2)
    assert layer.log_alpha.item() == pytest.approx(math.log(0.25))  # α = p / (1 - p)
    with torch.no_grad():
        layer.log_alpha.fill_(2.0)  # above the cap: α = e² would be used without the clamp
    assert layer.alpha.item() == pytest.approx(1.0)
    torch.manual_seed(0)
    out = layer.train()(torch.ones(500_000, dtype=torch.float64))
    assert out.var().item() == pytest.approx(1.0, rel=0.015)
    layer(torch.ones(3, 7))  # 7 noise units per example
    expected = -7 * neg_kl_log_uniform(torch.tensor(0.0)).item()
    assert layer.kl().item() == pytest.approx(expected, rel=1e-6)
    capped = VariationalDropout(0.2, max_log_alpha=1.0)
    with torch.no_grad():
        capped.log_alpha.fill_(2.0)
    assert capped.alpha.item() == pytest.approx(math.e)


def test_kl_only_loss_makes_alpha_grow_up_to_the_cap():
    layer = VariationalDropout(0.1).train()
    layer(torch.ones(4, 16))
    start = layer.log_alpha.item()
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    trace = []
    for _ in range(200):
        opt.zero_grad()
        layer.kl().backward()
        opt.step()
        trace.append(layer.clamped_log_alpha().item())
    assert trace[0] > start
    assert all(b >= a for a, b in zip(trace, trace[1:]))
    assert trace[-1] == pytest.approx(0.0, abs=1e-6)  # reaches max_log_alpha = 0 and stays


def test_data_loss_that_punishes_noise_makes_alpha_shrink():
    torch.manual_seed(0)
    layer = VariationalDropout(0.3).train()
    x = torch.randn(256, 16)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    start = layer.log_alpha.item()
    for _ in range(100):
        opt.zero_grad()
        # regress x through the layer: E||x ξ - x||² = α ||x||², minimized by α -> 0
        nn.functional.mse_loss(layer(x), x).backward()
        opt.step()
    assert layer.log_alpha.item() < start - 1.0


def test_rate_pushed_over_the_cap_still_comes_back_down():
    # p = 0.5 starts exactly at the cap; a KL-dominated phase pushes log α over it. A plain
    # clamp would then have zero gradient forever and freeze α at 1 whatever the data says.
    torch.manual_seed(0)
    layer = VariationalDropout(0.5).train()
    x = torch.randn(256, 16)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    for _ in range(10):
        opt.zero_grad()
        layer(x)
        layer.kl().backward()
        opt.step()
    assert layer.log_alpha.item() > 0.1 and layer.alpha.item() == pytest.approx(1.0)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.mse_loss(layer(x), x).backward()
        opt.step()
    assert layer.clamped_log_alpha().item() < -0.5


def test_clamp_gradient_above_the_cap_passes_only_downhill():
    layer = VariationalDropout(0.5)
    with torch.no_grad():
        layer.log_alpha.fill_(1.0)
    layer.clamped_log_alpha().backward()  # d/dx of +min(x, 0): descent moves x down: passes
    assert layer.log_alpha.grad.item() == 1.0
    layer.log_alpha.grad = None
    (-layer.clamped_log_alpha()).backward()  # descent would push x further up: blocked
    assert layer.log_alpha.grad.item() == 0.0
    with torch.no_grad():
        layer.log_alpha.fill_(-1.0)  # below the cap: the plain gradient both ways
    (-layer.clamped_log_alpha()).backward()
    assert layer.log_alpha.grad.item() == -1.0


@pytest.mark.parametrize("shape", [(20_000, 3), (2_000, 3, 5, 2)], ids=["BC", "BCHW"])
def test_per_feature_rates_apply_along_dim_1(shape):
    torch.manual_seed(0)
    rates = torch.tensor([0.05, 0.3, 1.0])
    layer = VariationalDropout(0.5, num_features=3).train()
    assert layer.log_alpha.shape == (3,)
    with torch.no_grad():
        layer.log_alpha.copy_(rates.log())
    out = layer(torch.ones(shape, dtype=torch.float64))
    channel_first = out.transpose(0, 1).reshape(3, -1)  # (C, everything else)
    for c in range(3):
        assert channel_first[c].var().item() == pytest.approx(rates[c].item(), rel=0.03)
    # KL: every one of the prod(shape[2:]) units of channel c per example pays channel c's KL
    units_per_channel = math.prod(shape[2:])
    expected = -units_per_channel * neg_kl_log_uniform(rates.log().double()).sum().item()
    assert layer.kl().item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="features must be dim 1"):
        layer(torch.ones(4, 5))


def test_variational_rejects_zero_rate():
    with pytest.raises(ValueError, match="p > 0"):
        VariationalDropout(0.0)


# ------------------------------------------------------------------------- converting a model
def _net() -> nn.Module:
    # Dropout2d last: never called on these (B, F) inputs, only there to be left alone
    return nn.Sequential(
        nn.Linear(6, 8), nn.Dropout(0.2),
        nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Dropout(0.0)),
        nn.AlphaDropout(0.1), nn.Linear(8, 2), nn.Dropout2d(0.3))


@pytest.mark.parametrize("kind,cls", [("gaussian", GaussianDropout),
                                      ("variational", VariationalDropout)])
def test_convert_dropout_swaps_every_positive_rate_dropout(kind, cls):
    net = _net()
    assert convert_dropout(net, kind) == 2
    assert isinstance(net[1], cls) and isinstance(net[2][1], cls)
    rates = [0.2, 0.5]
    for layer, p in zip([net[1], net[2][1]], rates):
        if kind == "gaussian":
            assert layer.p == p
        else:
            assert layer.alpha.item() == pytest.approx(p / (1 - p))
    # p = 0, AlphaDropout and Dropout2d (structured noise) are left alone
    assert type(net[2][2]) is nn.Dropout
    assert type(net[3]) is nn.AlphaDropout and type(net[5]) is nn.Dropout2d


def test_convert_dropout_standard_and_unknown_kind():
    net = _net()
    assert convert_dropout(net, "standard") == 0
    assert sum(type(m) is nn.Dropout for m in net.modules()) == 3
    assert DROPOUT_KINDS == ("standard", "gaussian", "variational")
    with pytest.raises(ValueError, match="standard, gaussian, variational"):
        convert_dropout(net, "bernoulli")


def test_variational_kl_sums_the_layers():
    net = _net()
    convert_dropout(net, "variational")
    assert variational_kl(net).item() == 0.0  # nothing seen yet
    net.train()[:5](torch.randn(5, 6))
    layers = [m for m in net.modules() if isinstance(m, VariationalDropout)]
    assert len(layers) == 2
    # each layer sees 8 units per example; KL per unit at its own initial rate
    expected = sum(-8 * neg_kl_log_uniform(torch.tensor(math.log(p / (1 - p)))).item()
                   for p in (0.2, 0.5))
    assert variational_kl(net).item() == pytest.approx(expected, rel=1e-6)
    assert variational_kl(nn.Linear(2, 2)).item() == 0.0


# ------------------------------------------------------------------------- config end to end
def test_variational_dropout_config_trains_and_adds_kl_over_n_train(tiny_overrides, runs_dir):
    cfg = load_config(None, tiny_overrides + [
        "model.options={img_size: 8, drop_rate: 0.3}", "model.dropout=variational",
        "train.epochs=1"])
    result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok, result.error
    layers = [m for m in result.model.modules() if isinstance(m, VariationalDropout)]
    assert len(layers) == 1 and layers[0].units_per_example == 64  # cnn_tiny's 64 features
    assert layers[0].log_alpha.item() != pytest.approx(math.log(0.3 / 0.7))  # it was trained

    model, loaders, _, _ = build_model_and_data(cfg, torch.device("cpu"))
    num_train = loaders.train.num_examples
    assert num_train + loaders.test.num_examples == 1797  # sklearn digits, train + test split
    model.train()(next(iter(loaders.train))["x"])
    penalty = build_penalty(model, cfg, num_train=num_train)
    expected = -64 * neg_kl_log_uniform(torch.tensor(math.log(0.3 / 0.7))).item() / num_train
    assert penalty().item() == pytest.approx(expected, rel=1e-5)
    assert penalty().item() == pytest.approx(variational_kl(model).item() / num_train)
    standard = load_config(None, tiny_overrides + ["model.options={img_size: 8, drop_rate: 0.3}"])
    assert build_penalty(model, standard, num_train=num_train) is None


def test_gaussian_dropout_config_builds_and_requires_a_dropout_rate(tiny_overrides):
    cfg = load_config(None, tiny_overrides + ["model.options={img_size: 8, drop_rate: 0.3}",
                                              "model.dropout=gaussian"])
    model = cfg.model.build(num_classes=10, in_chans=1)
    assert isinstance(model.drop, GaussianDropout) and model.drop.p == 0.3
    bare = load_config(None, tiny_overrides + ["model.dropout=gaussian"])
    with pytest.raises(ValueError, match="drop_rate"):
        bare.model.build(num_classes=10, in_chans=1)
