"""Dead-unit counting on constructed networks whose dead units are known by construction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.analysis.dead_units import DeadUnitCounter, relu_family_modules


def test_linear_units_with_very_negative_bias_are_exactly_the_dead_ones():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    dead = [1, 4, 6]
    with torch.no_grad():
        net[0].weight.clamp_(-0.1, 0.1)  # |w.x| <= 0.5 for inputs in [-1, 1]
        net[0].bias.fill_(1.0)  # every other unit is positive for every input
        net[0].bias[dead] = -1e3
    counter = DeadUnitCounter(net)
    with counter, torch.no_grad():
        for _ in range(3):
            net(torch.rand(16, 5) * 2 - 1)
    assert counter.results() == {"1": {"dead_fraction": 3 / 8, "dead": 3, "units": 8,
                                       "never_positive_fraction": 3 / 8, "never_positive": 3,
                                       "zero_region": True}}
    assert counter.dead_indices("1") == dead


def test_conv_channel_is_dead_only_if_zero_at_every_position_of_every_example():
    conv = nn.Conv2d(1, 4, kernel_size=1)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias[:] = torch.tensor([0.0, -1e3, -0.99, 0.0])
        conv.weight[3] = 0.0  # channel 3 outputs exactly relu(0) = 0 everywhere: dead
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.rand(6, 1, 5, 5) * 0.9
    x[4, 0, 2, 3] = 0.995  # the single position where channel 2 (bias -0.99) is positive
    counter = DeadUnitCounter(net)
    with counter, torch.no_grad():
        net(x[:3])
        net(x[3:])  # channel 2 comes alive only in this second batch
    assert counter.dead_indices("1") == [1, 3]
    assert counter.results()["1"] == {"dead_fraction": 0.5, "dead": 2, "units": 4,
                                      "never_positive_fraction": 0.5, "never_positive": 2,
                                      "zero_region": True}
    counter.reset()
    with counter, torch.no_grad():
        net(x[:3])  # without the one positive pixel channel 2 is dead too
    assert counter.dead_indices("1") == [1, 2, 3]


@pytest.mark.parametrize("act", [nn.LeakyReLU(0.01), nn.PReLU(), nn.ELU(), nn.SELU(), nn.GELU(),
                                 nn.SiLU(), nn.Mish()])
def test_rectifiers_without_a_zero_region_count_never_positive_units(act):
    # Units 0 and 2 get a very negative pre-activation for every input: never positive, yet
    # their outputs are non-zero (small negative), so none is "dead" in the exact-zero sense.
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.clamp_(-0.1, 0.1)
        lin.bias[:] = torch.tensor([-5.0, 1.0, -5.0, 1.0])
    net = nn.Sequential(lin, act)
    counter = DeadUnitCounter(net)
    with counter, torch.no_grad():
        net(torch.rand(32, 3) * 2 - 1)
    result = counter.results()["1"]
    assert result["never_positive"] == 2 and result["never_positive_fraction"] == 0.5
    assert result["dead"] == 0 and result["zero_region"] is False  # direct check: every unit produced some non-zero output
    assert (net(torch.rand(8, 3)) != 0).all()


def test_token_outputs_count_features_of_the_last_dim():
    lin = nn.Linear(4, 6)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias[:] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, 1.0])
    net = nn.Sequential(lin, nn.ReLU())
    counter = DeadUnitCounter(net)
    with counter, torch.no_grad():
        net(torch.randn(2, 7, 4))  # (B, L, D): units are the D features
    assert counter.dead_indices("1") == [1, 3]


def test_selection_hook_removal_and_errors():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU6(), nn.GELU(), nn.Hardswish(), nn.Sigmoid())
    assert list(relu_family_modules(net)) == ["1", "3"]  # exact zeros possible; GELU has none
    counter = DeadUnitCounter(net)
    with counter:
        net(torch.randn(2, 3))
    assert all(len(m._forward_hooks) == 0 for m in net)
    with pytest.raises(KeyError, match="has not produced an output"):
        DeadUnitCounter(net).dead_indices("1")
    shared = nn.ReLU()
    with DeadUnitCounter(nn.Sequential(shared), modules={"r": shared}):
        shared(torch.randn(2, 3))
        with pytest.raises(ValueError, match="fixed unit count"):
            shared(torch.randn(2, 5))
