"""Gradient check (agrees with torch.autograd.gradcheck), overfit-one-batch, parameter summary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.analysis.debug import (format_parameter_summary, gradient_check, overfit_one_batch,
                                    parameter_summary)
from archlab.models import create_model


class Cube(torch.autograd.Function):
    """x³ with a selectable backward: the correct 3x², or a wrong 2x²."""

    @staticmethod
    def forward(ctx, x, wrong):
        ctx.save_for_backward(x)
        ctx.wrong = wrong
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (2 if ctx.wrong else 3) * x ** 2, None


class ScaleByWeight(torch.autograd.Function):
    """y = w·x whose backward forgets the weight's gradient sign (wrong only for the param)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x * w

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        return grad * w, -(grad * x).sum(0)


class Net(nn.Module):
    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        self.linear, self.wrong = nn.Linear(4, 3), wrong

    def forward(self, x):
        return torch.tanh(Cube.apply(self.linear(x), self.wrong))


def _input():
    torch.manual_seed(0)
    return torch.randn(5, 4)


def test_correct_backward_passes_and_agrees_with_torch_gradcheck():
    net, x = Net(), _input()
    report = gradient_check(net, x)
    assert report.passed, report.table()
    assert [e.name for e in report.entries] == ["input 0", "linear.weight", "linear.bias"]
    assert max(e.max_abs_error for e in report.entries) < 1e-7
    net64 = Net().double()
    net64.load_state_dict(net.state_dict())
    assert torch.autograd.gradcheck(net64, (x.double().requires_grad_(),))


def test_wrong_backward_is_caught_like_torch_gradcheck():
    net, x = Net(wrong=True), _input()
    report = gradient_check(net, x)
    assert not report.passed
    assert report.failures() == ["input 0", "linear.weight", "linear.bias"]
    # 2x² instead of 3x² scales every upstream gradient by 2/3: relative error 1/3
    assert min(e.max_rel_error for e in report.entries) > 0.3
    net64 = Net(wrong=True).double()
    assert not torch.autograd.gradcheck(net64, (x.double().requires_grad_(),),
                                        raise_exception=False)


def test_wrong_parameter_gradient_is_reported_per_tensor():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4))

        def forward(self, x):
            return ScaleByWeight.apply(x, self.w)

    report = gradient_check(Scaled(), _input())
    assert report.failures() == ["w"]
    assert "NO" in report.table().splitlines()[2] and "yes" in report.table().splitlines()[1]


def test_dropout_subset_and_inputs_untouched():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 64), nn.Dropout(0.5), nn.Linear(64, 2)).train()
    x = _input().double()
    original = x.clone()
    report = gradient_check(net, x, max_elements=10)
    assert report.passed, report.table()  # the dropout mask repeats across evaluations
    assert [e.checked for e in report.entries] == [10, 10, 10, 10, 2]
    assert torch.equal(x, original)
    with pytest.raises(ValueError, match="at least one input"):
        gradient_check(net)


def test_tiny_cnn_overfits_one_batch_and_cannot_with_lr_zero():
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=4, in_chans=1, img_size=8)
    x, y = torch.randn(8, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = overfit_one_batch(model, x, y, steps=150, lr=1e-2)
    assert report.passed and report.accuracy == 1.0, str(report)
    assert report.final_loss < 0.01 and report.losses[0] > 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy trained
    stuck = overfit_one_batch(model, x, y, steps=5, lr=0.0)
    assert not stuck.passed and len(stuck.losses) == 5 and "CANNOT" in str(stuck)


def test_parameter_summary_matches_direct_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    rows = parameter_summary(model)
    assert [r.name for r in rows] == [n for n, _ in model.named_parameters()]
    assert all(r.grad_norm is None for r in rows)
    model(torch.randn(6, 3)).pow(2).sum().backward()
    rows = {r.name: r for r in parameter_summary(model)}
    w = model[0].weight
    assert rows["0.weight"].shape == (4, 3) and rows["0.weight"].numel == 12
    assert rows["0.weight"].mean == pytest.approx(w.double().mean().item())
    assert rows["0.weight"].std == pytest.approx(w.double().std(correction=0).item())
    assert rows["0.weight"].grad_norm == pytest.approx(w.grad.double().norm().item())
    assert not rows["2.bias"].trainable and rows["2.bias"].grad_norm is None
    text = format_parameter_summary(list(rows.values()))
    assert "total 34 parameters (32 trainable) in 6 tensors" in text and "(frozen)" in text
