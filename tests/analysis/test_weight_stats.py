"""Update-to-weight ratios against ||W_after - W_before|| / ||W_before|| computed directly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.analysis.weight_stats import UpdateToWeightRatio, weight_norms


def make_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def train_step(model, optimizer) -> None:
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()


@pytest.mark.parametrize("optim", ["sgd", "adamw"])
def test_update_ratio_equals_direct_computation(optim):
    model = make_model()
    optimizer = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if optim == "sgd"
                 else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1))
    updates = UpdateToWeightRatio(model)
    train_step(model, optimizer)  # a first step, so momentum / Adam state are in play
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    updates.snapshot()
    train_step(model, optimizer)
    got = updates.measure()
    assert list(got) == [n for n, _ in model.named_parameters()]
    for name, p in model.named_parameters():
        delta = (p.detach() - before[name]).norm()
        assert got[name]["update_ratio"] == pytest.approx((delta / before[name].norm()).item(),
                                                          rel=1e-5)
        assert got[name]["norm"] == pytest.approx(p.detach().norm().item(), rel=1e-6)
        assert got[name]["update_ratio"] > 0
    assert not updates.pending


def test_zero_weight_frozen_parameter_and_misuse():
    model = make_model()
    with torch.no_grad():
        model[0].bias.zero_()
    model[2].bias.requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    updates = UpdateToWeightRatio(model)
    updates.snapshot()
    train_step(model, optimizer)
    got = updates.measure()
    assert got["0.bias"]["update_ratio"] is None  # ||W_before|| = 0: undefined, not inf
    assert got["0.bias"]["norm"] > 0
    assert "2.bias" not in got
    with pytest.raises(RuntimeError, match="snapshot"):
        updates.measure()
    with pytest.raises(TypeError, match="nn.Module"):
        UpdateToWeightRatio([torch.zeros(2)])


def test_weight_norms_equal_torch_norm():
    model = make_model()
    norms = weight_norms(model)
    assert list(norms) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for name, p in model.named_parameters():
        assert norms[name] == pytest.approx(torch.linalg.norm(p.detach().flatten()).item(),
                                            rel=1e-6)
