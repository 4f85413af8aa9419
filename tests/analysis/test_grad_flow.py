"""Gradient flow against norms computed directly from p.grad, and the vanishing / exploding
checks on networks whose behaviour is known (Glorot & Bengio 2010)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archlab.analysis.grad_flow import check_gradient_flow, gradient_flow
from archlab.models import create_model


def backward_once(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(32, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (32,), generator=g)
    nn.functional.cross_entropy(model(x), y).backward()


def make_mlp(depth: int, act: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("mlp", num_classes=10, in_chans=1, img_size=8, depth=depth, width=32,
                        act=act)


def test_per_layer_numbers_equal_direct_norms_of_p_grad():
    model = make_mlp(3, "relu")
    backward_once(model)
    flow = gradient_flow(model)
    expected = [(n, p.grad) for n, p in model.named_parameters()]
    assert list(flow.layers) == [n for n, _ in expected]  # registration = depth order
    for name, grad in expected:
        assert flow.layers[name]["norm"] == pytest.approx(grad.norm().item(), rel=1e-6)
        assert flow.layers[name]["mean_abs"] == pytest.approx(grad.abs().mean().item(), rel=1e-6)
    # clip_grad_norm_ with an infinite bound returns the total norm without clipping.
    total = nn.utils.clip_grad_norm_(model.parameters(), float("inf")).item()
    assert flow.global_norm == pytest.approx(total, rel=1e-6)
    first, last = model.blocks[0][0].weight.grad, model.fc.weight.grad
    assert (flow.first, flow.last) == ("blocks.0.0.weight", "fc.weight")
    assert flow.depth_ratio == pytest.approx((first.norm() / last.norm()).item(), rel=1e-6)


def test_parameters_without_gradient_are_left_out():
    model = make_mlp(2, "relu")
    model.blocks[0].requires_grad_(False)
    backward_once(model)
    flow = gradient_flow(model)
    assert "blocks.0.0.weight" not in flow.layers and "blocks.1.0.weight" in flow.layers
    assert flow.first == "blocks.1.0.weight"
    assert gradient_flow(nn.Linear(2, 2)).layers == {}  # no backward yet


def test_vanishing_fires_for_deep_sigmoid_not_for_shallow_relu():
    deep, shallow = make_mlp(10, "sigmoid"), make_mlp(2, "relu")
    backward_once(deep)
    backward_once(shallow)
    deep_msgs = check_gradient_flow(gradient_flow(deep), vanishing_ratio=1e-3)
    assert len(deep_msgs) == 1 and deep_msgs[0].startswith("vanishing gradients")
    assert "'blocks.0.0.weight'" in deep_msgs[0] and "'fc.weight'" in deep_msgs[0]
    assert check_gradient_flow(gradient_flow(shallow), vanishing_ratio=1e-3) == []
    # The check compares against the threshold, nothing else: just above the ratio is quiet.
    ratio = gradient_flow(deep).depth_ratio
    assert check_gradient_flow(gradient_flow(deep), vanishing_ratio=ratio * 0.99) == []
    assert check_gradient_flow(gradient_flow(deep), vanishing_ratio=None) == []


def test_exploding_fires_above_threshold_and_for_non_finite():
    model = make_mlp(2, "relu")
    backward_once(model)
    flow = gradient_flow(model)
    assert check_gradient_flow(flow, exploding_norm=flow.global_norm * 1.01) == []
    msgs = check_gradient_flow(flow, exploding_norm=flow.global_norm * 0.99)
    assert len(msgs) == 1 and msgs[0].startswith("exploding gradients")
    model.fc.bias.grad[0] = float("inf")
    flow = gradient_flow(model)
    assert math.isinf(flow.global_norm)
    msgs = check_gradient_flow(flow, exploding_norm=1e30)
    assert len(msgs) == 1 and "inf" in msgs[0]


def test_bad_thresholds_are_rejected_with_the_name():
    flow = gradient_flow(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="vanishing_ratio must be > 0"):
        check_gradient_flow(flow, vanishing_ratio=0.0)
    with pytest.raises(ValueError, match="exploding_norm"):
        check_gradient_flow(flow, exploding_norm=-1.0)
    with pytest.raises(TypeError, match="nn.Module"):
        gradient_flow(torch.zeros(3))
