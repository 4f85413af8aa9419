"""cross_entropy against torch's F.cross_entropy (hard) and -Σ q log p (soft)."""

import pytest
import torch
import torch.nn.functional as F

from archlab.losses import CrossEntropyLoss, build_loss

WEIGHT = [0.5, 2.0, 1.0, 0.1, 3.0]


def _inputs(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, shape[1], shape[:1] + shape[2:], generator=g)
    return logits, target


@pytest.mark.parametrize("shape", [(6, 5), (2, 5, 3, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weight", [None, WEIGHT])
def test_hard_targets_match_torch(shape, reduction, smoothing, weight):
    logits, target = _inputs(shape)
    target.view(-1)[::4] = -100  # some ignored positions
    ours = CrossEntropyLoss(label_smoothing=smoothing, weight=weight, reduction=reduction)
    w = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    ref = F.cross_entropy(logits, target, weight=w, label_smoothing=smoothing,
                          reduction=reduction)
    out = ours(logits, target)
    torch.testing.assert_close(out, ref)
    (g_ours,) = torch.autograd.grad(out.sum(), logits)
    (g_ref,) = torch.autograd.grad(ref.sum(), logits)
    torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weight", [None, WEIGHT])
def test_soft_targets_match_formula(smoothing, weight):
    logits, _ = _inputs((4, 5), seed=1)
    q = torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    q = q / q.sum(1, keepdim=True)
    p = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    q_s = (1 - smoothing) * q + smoothing / 5
    w = torch.ones(5, dtype=torch.float64) if weight is None else torch.tensor(weight).double()
    per_sample = -(w * q_s * torch.log(p)).sum(1)
    loss = CrossEntropyLoss(label_smoothing=smoothing, weight=weight, reduction="none")
    torch.testing.assert_close(loss(logits, q), per_sample)
    mean = CrossEntropyLoss(label_smoothing=smoothing, weight=weight)(logits, q)
    torch.testing.assert_close(mean, per_sample.mean())


def test_mixup_target_is_the_mix_of_two_losses():
    # Linearity in q: CE(λ e_a + (1-λ) e_b) = λ CE(a) + (1-λ) CE(b), which is why mixup works
    # with soft targets instead of two loss evaluations.
    logits, ya = _inputs((6, 5), seed=3)
    yb = ya.roll(1)
    lam = 0.3
    q = lam * F.one_hot(ya, 5).double() + (1 - lam) * F.one_hot(yb, 5).double()
    ce = CrossEntropyLoss(label_smoothing=0.1)
    torch.testing.assert_close(ce(logits, q), lam * ce(logits, ya) + (1 - lam) * ce(logits, yb))


def test_soft_spatial_targets():
    logits, target = _inputs((2, 5, 3, 3), seed=4)
    q = F.one_hot(target, 5).permute(0, 3, 1, 2).double()
    ce = CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(ce(logits, q), F.cross_entropy(logits, target, reduction="none"))


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="label_smoothing"):
        CrossEntropyLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="weight"):
        CrossEntropyLoss(weight=[1.0, -1.0])
    with pytest.raises(ValueError, match="reduction"):
        build_loss("cross_entropy", reduction="avg")
    logits, target = _inputs((4, 5))
    with pytest.raises(ValueError, match="K=5"):
        CrossEntropyLoss(weight=[1.0, 2.0])(logits, target)
    with pytest.raises(ValueError, match="integer targets"):
        CrossEntropyLoss()(logits, target[:3])
    with pytest.raises(ValueError, match="soft targets"):
        CrossEntropyLoss()(logits, torch.rand(4, 3))
