"""nt_xent against a direct loop over the 2B anchors (SimCLR eq. 1)."""

import math

import pytest
import torch

from archlab.losses import NTXentLoss


def _loop_reference(z1, z2, tau):
    z = torch.cat([z1, z2]).tolist()
    n, b = len(z), len(z1)

    def cos(u, v):
        dot = sum(a * c for a, c in zip(u, v))
        return dot / math.sqrt(sum(a * a for a in u) * sum(c * c for c in v))

    losses = []
    for i in range(n):
        j = (i + b) % n
        denominator = sum(math.exp(cos(z[i], z[k]) / tau) for k in range(n) if k != i)
        losses.append(-math.log(math.exp(cos(z[i], z[j]) / tau) / denominator))
    return torch.tensor(losses, dtype=torch.float64)


@pytest.mark.parametrize("tau", [0.5, 0.1])
def test_matches_loop(tau):
    g = torch.Generator().manual_seed(0)
    z1, z2 = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(2))
    expected = _loop_reference(z1, z2, tau)
    torch.testing.assert_close(NTXentLoss(temperature=tau, reduction="none")(z1, z2), expected)
    torch.testing.assert_close(NTXentLoss(temperature=tau)(z1, z2), expected.mean())
    torch.testing.assert_close(NTXentLoss(temperature=tau, reduction="sum")(z1, z2),
                               expected.sum())


def test_scale_invariant_and_rewards_aligned_views():
    g = torch.Generator().manual_seed(1)
    z1, z2 = (torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(2))
    loss = NTXentLoss(temperature=0.5)
    torch.testing.assert_close(loss(3.0 * z1, 0.1 * z2), loss(z1, z2))
    assert loss(z1, z1 + 0.01 * z2) < loss(z1, z2)


def test_bad_options_and_inputs():
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError, match="B >= 2"):
        NTXentLoss()(torch.zeros(1, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="z1 and z2"):
        NTXentLoss()(torch.zeros(2, 3), torch.zeros(3, 3))
