"""center: value and gradients against Wen et al.'s formula; the centers' own lr group."""

import pytest
import torch

from archlab.losses import CenterLoss, build_loss


def _setup():
    torch.manual_seed(0)
    loss = CenterLoss(num_classes=4, feat_dim=3, reduction="mean")
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 2, 1, 0, 2])  # class 3 absent
    return loss.double(), x, y


def test_value_matches_formula():
    loss, x, y = _setup()
    c = loss.centers.detach()
    expected = sum(0.5 * ((x[i] - c[y[i]]) ** 2).sum() for i in range(6)) / 6
    torch.testing.assert_close(loss(x, y), expected)
    loss.reduction = "sum"
    torch.testing.assert_close(loss(x, y), expected * 6)


def test_gradients_match_formula():
    loss, x, y = _setup()
    loss(x, y).backward()
    c = loss.centers.detach()
    # ∂L/∂c_j = -(1/B) Σ_{i: y_i = j} (x_i - c_j); zero for classes absent from the batch.
    expected_c = torch.zeros_like(c)
    for i in range(6):
        expected_c[y[i]] -= (x[i].detach() - c[y[i]]) / 6
    torch.testing.assert_close(loss.centers.grad, expected_c)
    assert loss.centers.grad[3].abs().sum() == 0
    # ∂L/∂x_i = (x_i - c_{y_i}) / B
    torch.testing.assert_close(x.grad, (x.detach() - c[y]) / 6)


def test_param_group_gives_centers_their_own_lr():
    loss = CenterLoss(num_classes=3, feat_dim=2, center_lr_multiplier=10.0)
    model = torch.nn.Linear(2, 2)
    group = loss.param_group(lr=0.1)
    assert group["params"] == [loss.centers] and group["weight_decay"] == 0.0
    opt = torch.optim.SGD([{"params": model.parameters()}, group], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 1.0])
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 2])
    before = loss.centers.detach().clone()
    loss(model(x), y).backward()
    grad = loss.centers.grad.clone()
    opt.step()
    torch.testing.assert_close(loss.centers.detach(), before - 1.0 * grad)
    # A LambdaLR schedule scales both groups, keeping the 10x ratio.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.5])
    del sched


def test_centers_are_a_parameter_in_the_state_dict():
    loss = build_loss("center", num_classes=5, feat_dim=7)
    assert list(dict(loss.named_parameters())) == ["centers"]
    assert loss.state_dict()["centers"].shape == (5, 7)


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="num_classes"):
        CenterLoss(num_classes=0, feat_dim=2)
    with pytest.raises(ValueError, match="center_lr_multiplier"):
        CenterLoss(num_classes=2, feat_dim=2, center_lr_multiplier=0.0)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        CenterLoss(num_classes=2, feat_dim=2)(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="target"):
        CenterLoss(num_classes=2, feat_dim=2)(torch.zeros(3, 2), torch.zeros(3))
