"""distillation against F.kl_div + F.cross_entropy (Hinton et al. 2015)."""

import pytest
import torch
import torch.nn.functional as F

from archlab.losses import DistillationLoss


def _inputs():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 5, (4,), generator=g)
    return s, t, y


@pytest.mark.parametrize("temperature,alpha", [(4.0, 0.9), (1.0, 0.5), (2.5, 0.0)])
def test_matches_kl_div_reference(temperature, alpha):
    s, t, y = _inputs()
    kl = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1),
                  reduction="batchmean")
    expected = alpha * temperature ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)
    loss = DistillationLoss(temperature=temperature, alpha=alpha)
    torch.testing.assert_close(loss(s, t, y), expected)
    kl_sum = F.kl_div(F.log_softmax(s / temperature, 1), F.softmax(t / temperature, 1),
                      reduction="sum")
    expected_sum = (alpha * temperature ** 2 * kl_sum
                    + (1 - alpha) * F.cross_entropy(s, y, reduction="sum"))
    loss.reduction = "sum"
    torch.testing.assert_close(loss(s, t, y), expected_sum)


def test_only_the_student_gets_gradients():
    s, t, y = _inputs()
    DistillationLoss()(s, t, y).backward()
    assert s.grad is not None and t.grad is None


def test_identical_teacher_leaves_only_the_hard_term():
    s, _, y = _inputs()
    out = DistillationLoss(temperature=3.0, alpha=0.7, reduction="none")(s, s, y)
    torch.testing.assert_close(out, 0.3 * F.cross_entropy(s, y, reduction="none"))


def test_soft_targets():
    s, t, y = _inputs()
    q = F.one_hot(y, 5).double()
    loss = DistillationLoss(alpha=0.5)
    torch.testing.assert_close(loss(s, t, q), loss(s, t, y))


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        DistillationLoss(alpha=1.1)
    with pytest.raises(ValueError, match="teacher logits"):
        DistillationLoss()(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
