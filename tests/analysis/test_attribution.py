"""Saliency and integrated gradients against captum and against a linear model's closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.analysis.attribution import (heatmap, integrated_gradients, normalize_maps,
                                          quadrature, saliency)
from archlab.models import create_model


def _linear(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 4 * 4, 3))


def _cnn():
    torch.manual_seed(0)
    return create_model("cnn_tiny", num_classes=4, in_chans=2, img_size=16).eval()


def test_saliency_of_linear_model_is_abs_weight_max_over_channels():
    model, x = _linear(), torch.randn(3, 2, 4, 4)
    target = torch.tensor([2, 0, 1])
    w = model[1].weight.detach().view(3, 2, 4, 4)
    torch.testing.assert_close(saliency(model, x, target), w[target].abs().amax(1))


def test_saliency_equals_captum():
    captum = pytest.importorskip("captum.attr")
    model, x = _cnn(), torch.randn(4, 2, 16, 16)
    target = model(x).argmax(1)
    ref = captum.Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
    torch.testing.assert_close(saliency(model, x), ref.amax(1))


def test_integrated_gradients_of_linear_model_is_exact():
    # F(x) = W x + b: gradient constant, so IG = (x - x') W_c and completeness is exact
    model, x = _linear(), torch.randn(2, 2, 4, 4)
    baseline = torch.randn(1, 2, 4, 4)
    target = torch.tensor([1, 2])
    w = model[1].weight.detach().view(3, 2, 4, 4)
    attr, delta = integrated_gradients(model, x, target, baseline=baseline, steps=3,
                                       return_delta=True)
    torch.testing.assert_close(attr, (x - baseline) * w[target])
    assert delta.abs().max() < 1e-5


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle",
                                    "gausslegendre"])
def test_integrated_gradients_equals_captum(method):
    captum = pytest.importorskip("captum.attr")
    model, x = _cnn(), torch.randn(3, 2, 16, 16)
    target = torch.tensor([0, 3, 1])
    ours = integrated_gradients(model, x, target, steps=12, method=method)
    ref = captum.IntegratedGradients(model).attribute(x, target=target, n_steps=12,
                                                      method=method)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_trapezoid_differs_from_captum_only_by_its_step_size():
    # captum 0.9 weights the n trapezoid points by 1/n (ends halved), summing to 1 - 1/n;
    # the rule on n points over [0, 1] has step 1/(n-1), so ours = captum * n / (n - 1)
    captum = pytest.importorskip("captum.attr")
    model, x = _cnn(), torch.randn(2, 2, 16, 16)
    ours = integrated_gradients(model, x, 1, steps=10, method="riemann_trapezoid")
    ref = captum.IntegratedGradients(model).attribute(x, target=1, n_steps=10,
                                                      method="riemann_trapezoid")
    torch.testing.assert_close(ours, ref * 10 / 9, atol=1e-6, rtol=1e-5)


def test_completeness_on_a_cnn():
    model, x = _cnn(), torch.randn(3, 2, 16, 16)
    attr, delta = integrated_gradients(model, x, steps=64, method="riemann_middle",
                                       return_delta=True)
    with torch.no_grad():
        logits = model(x)
        target = logits.argmax(1)
        base = model(torch.zeros_like(x))
        gap = (logits.gather(1, target[:, None]) - base.gather(1, target[:, None]))[:, 0]
    torch.testing.assert_close(attr.flatten(1).sum(1) - gap, delta)
    assert (delta.abs() < 0.02 * gap.abs().clamp_min(1.0)).all()


def test_quadrature_rules_integrate_polynomials():
    for method, degree in (("riemann_trapezoid", 1), ("riemann_middle", 1),
                           ("gausslegendre", 7)):
        alphas, weights = quadrature(method, 4)
        for p in range(degree + 1):
            assert abs((weights * alphas ** p).sum() - 1 / (p + 1)) < 1e-12, (method, p)
    with pytest.raises(ValueError, match="unknown integration method"):
        quadrature("simpson", 4)


def test_heatmap_and_normalisation():
    attr = torch.tensor([[[[1.0, -3.0], [0.0, 2.0]], [[-2.0, 1.0], [0.5, 0.0]]]])
    torch.testing.assert_close(heatmap(attr, "abs_sum"),
                               torch.tensor([[[2.5 / 3.5, 1.0], [0.0, 1.5 / 3.5]]]))
    torch.testing.assert_close(heatmap(attr, "abs_max"),
                               torch.tensor([[[(2 - 0.5) / 2.5, 1.0], [0.0, (2 - 0.5) / 2.5]]]))
    # constant maps, including a constant blurred by rounding, carry no ranking: zeros
    flat = torch.full((2, 3, 3), 0.7)
    flat[1, 0, 0] += 1e-8
    assert normalize_maps(flat).abs().max() == 0
    with pytest.raises(ValueError, match="unknown reduction"):
        heatmap(attr, "mean")


def test_bad_inputs():
    model = _linear()
    with pytest.raises(ValueError, match="steps must be >= 2"):
        integrated_gradients(model, torch.randn(1, 2, 4, 4), steps=1)
    with pytest.raises(ValueError, match=r"\(2,\) tensor"):
        saliency(model, torch.randn(2, 2, 4, 4), target=torch.tensor([0, 1, 2]))
