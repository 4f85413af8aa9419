"""focal: hand-computed cases, and exact reduction to CE / BCE at γ = 0 without α."""

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.losses import FocalLoss


def test_multiclass_hand_computed():
    # softmax([0, ln 3]) = [0.25, 0.75]; the true class 1 has p_t = 0.75.
    logits = torch.tensor([[0.0, math.log(3.0)]])
    target = torch.tensor([1])
    expected = (1 - 0.75) ** 2 * -math.log(0.75)
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    weighted = FocalLoss(gamma=2.0, alpha=[0.3, 0.7])(logits, target)
    assert weighted.item() == pytest.approx(0.7 * expected, rel=1e-6)


def test_binary_hand_computed():
    # logit 0 -> p = 0.5, positive: α (1 - 0.5)^2 ln 2.
    # logit ln 3 -> p = 0.75, negative: p_t = 0.25, (1 - α) 0.75^2 (-ln 0.25).
    logits = torch.tensor([0.0, math.log(3.0)])
    target = torch.tensor([1, 0])
    expected = [0.25 * 0.25 * math.log(2.0), 0.75 * 0.75 ** 2 * -math.log(0.25)]
    out = FocalLoss(mode="binary", alpha=0.25, gamma=2.0, reduction="none")(logits, target)
    assert out.tolist() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6, 4), (2, 4, 3, 3)])
def test_gamma_zero_is_cross_entropy(reduction, shape):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=g, dtype=torch.float64)
    target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    out = FocalLoss(gamma=0.0, reduction=reduction)(logits, target)
    torch.testing.assert_close(out, F.cross_entropy(logits, target, reduction=reduction))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_gamma_zero_is_bce_with_logits(reduction):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64) * 5
    target = torch.randint(0, 2, (4, 3), generator=g)
    out = FocalLoss(mode="binary", gamma=0.0, reduction=reduction)(logits, target)
    ref = F.binary_cross_entropy_with_logits(logits, target.double(), reduction=reduction)
    torch.testing.assert_close(out, ref)


def test_per_class_alpha_is_weighted_ce_sum_at_gamma_zero():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, 3, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (8,), generator=g)
    alpha = [0.2, 1.0, 3.0]
    out = FocalLoss(gamma=0.0, alpha=alpha, reduction="sum")(logits, target)
    ref = F.cross_entropy(logits, target, weight=torch.tensor(alpha).double(), reduction="sum")
    torch.testing.assert_close(out, ref)


def test_multiclass_matches_formula_for_random_inputs():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(5, 4, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (5,), generator=g)
    p_t = torch.softmax(logits, 1)[torch.arange(5), target]
    expected = -0.5 * (1 - p_t) ** 1.5 * torch.log(p_t)
    out = FocalLoss(gamma=1.5, alpha=0.5, reduction="none")(logits, target)
    torch.testing.assert_close(out, expected)


def test_binary_is_finite_for_confident_logits():
    logits = torch.tensor([100.0, -100.0, 100.0], requires_grad=True)
    target = torch.tensor([1.0, 0.0, 0.0])
    out = FocalLoss(mode="binary", alpha=0.25)(logits, target)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(logits.grad).all()
    assert out.item() == pytest.approx(0.75 * 100.0 / 3, rel=1e-4)  # only the wrong one counts


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(alpha=1.5)
    with pytest.raises(ValueError, match="alpha"):
        FocalLoss(mode="binary", alpha=[0.2, 0.8])
    with pytest.raises(ValueError, match="mode"):
        FocalLoss(mode="softmax")
    with pytest.raises(ValueError, match="K=3"):
        FocalLoss(alpha=[1.0, 2.0])(torch.zeros(2, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="binary targets"):
        FocalLoss(mode="binary")(torch.zeros(2, 3), torch.zeros(2))
