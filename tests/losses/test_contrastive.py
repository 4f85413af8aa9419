"""contrastive: hand-computed pairs (Hadsell et al. 2006, eq. 4)."""

import pytest
import torch

from archlab.losses import ContrastiveLoss


def _pairs():
    x1 = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    x2 = torch.tensor([[3.0, 4.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    same = torch.tensor([True, False, False, True])
    return x1, x2, same


def test_hand_computed():
    x1, x2, same = _pairs()
    # D = 5, 5, 0, 0. similar: ½ D²; dissimilar: ½ max(0, m - D)².
    out = ContrastiveLoss(margin=6.0, reduction="none")(x1, x2, same)
    assert out.tolist() == pytest.approx([12.5, 0.5, 18.0, 0.0])
    out = ContrastiveLoss(margin=4.0, reduction="none")(x1, x2, same)
    assert out.tolist() == pytest.approx([12.5, 0.0, 8.0, 0.0])
    assert ContrastiveLoss(margin=4.0)(x1, x2, same).item() == pytest.approx(20.5 / 4)
    assert ContrastiveLoss(margin=4.0, reduction="sum")(x1, x2, same).item() == pytest.approx(20.5)


def test_float_labels_and_gradients():
    x1, x2, same = _pairs()
    ContrastiveLoss(margin=6.0, reduction="sum")(x1, x2, same.float()).backward()
    assert torch.isfinite(x1.grad).all()  # identical dissimilar pair: no NaN from sqrt(0)
    # similar pair 0: ∂(½||x1 - x2||²)/∂x1 = x1 - x2
    torch.testing.assert_close(x1.grad[0], torch.tensor([-3.0, -4.0]))
    # dissimilar pair 1: -(m - D) (x1 - x2) / D = -(1)(-3, -4)/5
    torch.testing.assert_close(x1.grad[1], torch.tensor([0.6, 0.8]))


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="margin"):
        ContrastiveLoss(margin=0.0)
    with pytest.raises(ValueError, match="x1 and x2"):
        ContrastiveLoss()(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2))
    with pytest.raises(ValueError, match="same"):
        ContrastiveLoss()(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3))
