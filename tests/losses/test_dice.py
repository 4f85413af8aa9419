"""dice: hand-computed cases, a per-image per-class loop reference, perfect prediction -> 0."""

import pytest
import torch
import torch.nn.functional as F

from archlab.losses import DiceLoss

MASK = torch.tensor([[[1, 0], [0, 0]]])  # (1, 2, 2): one foreground pixel of four


def test_binary_hand_computed():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    # I = 0.5, Σp² = 1, Σg² = 1 -> D = 2·0.5 / 2 = 0.5
    assert DiceLoss(mode="binary", smooth=0.0)(logits, MASK).item() == pytest.approx(0.5)
    # (2·0.5 + 1) / (2 + 1) = 2/3
    assert DiceLoss(mode="binary", smooth=1.0)(logits, MASK).item() == pytest.approx(1 / 3)
    # Σp = 2, Σg = 1 -> D = 1/3
    sorensen = DiceLoss(mode="binary", smooth=0.0, squared_denominator=False)
    assert sorensen(logits, MASK).item() == pytest.approx(2 / 3)


def test_multiclass_hand_computed():
    logits = torch.zeros(1, 2, 2, 2)  # p = 0.5 for both classes everywhere
    # class 0: I = 1.5, Σp² = 1, Σg² = 3 -> D = 3/4; class 1: I = 0.5, 1 + 1 -> D = 1/2
    out = DiceLoss(smooth=0.0, reduction="none")(logits, MASK)
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.5]]))
    assert DiceLoss(smooth=0.0)(logits, MASK).item() == pytest.approx(0.375)
    assert DiceLoss(smooth=0.0, reduction="sum")(logits, MASK).item() == pytest.approx(0.75)


@pytest.mark.parametrize("squared", [True, False])
def test_multiclass_matches_loop_reference(squared):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (2, 4, 5), generator=g)
    prob = torch.softmax(logits, 1)
    expected = torch.empty(2, 3, dtype=torch.float64)
    for b in range(2):
        for c in range(3):
            p, t = prob[b, c], (target[b] == c).double()
            den = (p ** 2).sum() + (t ** 2).sum() if squared else p.sum() + t.sum()
            expected[b, c] = 1 - (2 * (p * t).sum() + 0.5) / (den + 0.5)
    out = DiceLoss(smooth=0.5, squared_denominator=squared, reduction="none")(logits, target)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("mode,channels", [("binary", 1), ("multiclass", 4)])
def test_perfect_prediction_is_zero(mode, channels):
    target = torch.randint(0, 2 if mode == "binary" else 3, (2, 6, 6),  # class 3 never present
                           generator=torch.Generator().manual_seed(1))
    if mode == "binary":
        logits = (target.unsqueeze(1).float() * 2 - 1) * 30
    else:
        logits = (F.one_hot(target, channels).permute(0, 3, 1, 2).float() * 2 - 1) * 30
    assert DiceLoss(mode=mode)(logits, target).item() < 1e-6
    wrong = DiceLoss(mode=mode)(-logits, target).item()
    assert wrong > 0.5


def test_gradient_reaches_logits():
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    DiceLoss()(logits, torch.randint(0, 3, (2, 4, 4))).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="smooth"):
        DiceLoss(smooth=-1.0)
    with pytest.raises(ValueError, match="squared_denominator"):
        DiceLoss(squared_denominator="yes")
    with pytest.raises(ValueError, match="C=1"):
        DiceLoss(mode="binary")(torch.zeros(1, 2, 2, 2), MASK)
    with pytest.raises(ValueError, match="C >= 2"):
        DiceLoss()(torch.zeros(1, 1, 2, 2), MASK)
    with pytest.raises(ValueError, match="target must have shape"):
        DiceLoss()(torch.zeros(1, 2, 2, 2), MASK[0])
