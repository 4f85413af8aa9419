"""The non-finite detector names the module where NaN/inf is born — not an earlier or a
later one — in both its raising and its recording mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.analysis.nonfinite import NonFiniteDetector, NonFiniteError


class Log(nn.Module):
    def forward(self, x):
        return torch.log(x)  # NaN for negative inputs


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    # tanh gives negative values, so module '2' is where NaN appears; '3' and '4' propagate it.
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), Log(), nn.Linear(8, 8), nn.ReLU())


class FunctionalParent(nn.Module):
    """The NaN is made by functional code in this module's forward, between two children."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    def forward(self, x):
        return self.block(torch.sqrt(self.a(x) - 100.0))


def test_raising_mode_names_the_module_that_produced_nan():
    net, x = make_net(), torch.randn(8, 4)
    assert torch.isnan(net(x)).any()  # the premise: the net really produces NaN
    with pytest.raises(NonFiniteError, match=r"first produced by module '2' \(Log\)$"):
        with NonFiniteDetector(net):
            net(x)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())


def test_recording_mode_gives_the_same_answer_with_step():
    net = make_net()
    detector = NonFiniteDetector(net, raise_error=False).attach()
    out = net(torch.randn(8, 4))  # no exception in this mode
    assert torch.isnan(out).any()
    message = detector.check(step=12)
    assert message == "non-finite output first produced by module '2' (Log) at step 12"
    assert detector.report == message
    assert detector.check() is None  # resolved flags are consumed
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.fill_(1.0)  # tanh(1) > 0: Log is finite now ...
        net[3].weight[0, 0] = float("inf")  # ... and the next Linear has the problem
    net(torch.randn(8, 4))
    assert detector.check(step=13).startswith("non-finite output first produced by module '3'")
    detector.detach()


def test_finite_pass_reports_nothing():
    net = make_net()
    with NonFiniteDetector(net):
        net[2] = nn.Identity()
        net(torch.randn(8, 4))  # no raise
    detector = NonFiniteDetector(net, raise_error=False).attach()
    net(torch.randn(8, 4))
    assert detector.check() is None and detector.report is None


def test_functional_code_and_input_data_are_blamed_not_the_next_module():
    parent = FunctionalParent()
    with pytest.raises(NonFiniteError, match=r"reached module 'block' \(Sequential\).*functional "
                                             r"code in the forward of the model itself"):
        with NonFiniteDetector(parent):
            parent(torch.randn(3, 4))
    x = torch.randn(3, 4)
    x[1, 2] = float("nan")
    net = make_net()
    with pytest.raises(NonFiniteError, match=r"reached the model itself \(Sequential\).*by the "
                                             r"input data"):
        with NonFiniteDetector(net):
            net(x)


def test_diverged_parameters_are_named():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[2].weight[1, 1] = float("nan")
    with pytest.raises(NonFiniteError, match=r"module '2' \(Linear\); its own parameters "
                                             r"\['weight'\] are non-finite"):
        with NonFiniteDetector(net):
            net(torch.randn(4, 3))
    with pytest.raises(TypeError, match="nn.Module"):
        NonFiniteDetector(lambda x: x)


class InPlaceParent(nn.Module):
    """An in-place op between two children turns an already-checked output into NaN."""

    def __init__(self):
        super().__init__()
        self.lin, self.act = nn.Linear(4, 4), nn.ReLU()

    def forward(self, x):
        y = self.lin(x)
        y.log_()  # NaN where y < 0, in the tensor the detector already saw as finite
        return self.act(y)


def test_in_place_change_after_a_check_is_still_caught_at_its_source():
    torch.manual_seed(0)
    parent = InPlaceParent()
    with pytest.raises(NonFiniteError, match=r"reached module 'act' \(ReLU\).*functional code "
                                             r"in the forward of the model itself"):
        with NonFiniteDetector(parent), torch.no_grad():
            parent(torch.randn(16, 4))
