"""Activation statistics against direct computation on each module's output (torch ops and
numpy.histogram as the references), and hook hygiene."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import nn

from archlab.analysis.activation_stats import ActivationStats, activation_modules

EPS = 0.05


def make_net() -> nn.Sequential:
    torch.manual_seed(0)
    # Large weights push the sigmoid and tanh into saturation, so those fractions are not 0.
    net = nn.Sequential(nn.Linear(6, 16), nn.Sigmoid(), nn.Linear(16, 16), nn.Tanh(),
                        nn.Linear(16, 16), nn.ReLU())
    with torch.no_grad():
        net[0].weight.mul_(4.0)
        net[2].weight.mul_(4.0)
    return net


def outputs_of(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference: each submodule's output, captured by the test's own hooks."""
    captured, handles = {}, []
    for name, m in net.named_children():
        handles.append(m.register_forward_hook(
            lambda mod, i, o, name=name: captured.__setitem__(name, o.detach().clone())))
    net(x)
    for h in handles:
        h.remove()
    return captured


def direct(y: torch.Tensor) -> dict[str, float]:
    return {"mean": y.mean().item(), "std": y.std(unbiased=False).item(),
            "sparsity": (y == 0).float().mean().item()}


def test_stats_equal_direct_computation_on_the_outputs():
    net, x = make_net(), torch.randn(64, 6)
    stats = ActivationStats(net, saturation_eps=EPS)
    with stats, torch.no_grad():
        net(x)
    got, ref = stats.results(), outputs_of(net, x)
    assert list(got) == ["1", "3", "5"]  # the activation modules, in depth order
    for name in got:
        for key, value in direct(ref[name]).items():
            assert got[name][key] == pytest.approx(value, abs=1e-6), (name, key)
    y_sig, y_tanh = ref["1"], ref["3"]
    assert got["1"]["saturation"] == pytest.approx(
        ((y_sig < EPS) | (y_sig > 1 - EPS)).float().mean().item())
    assert got["3"]["saturation"] == pytest.approx((y_tanh.abs() > 1 - EPS).float().mean().item())
    assert 0 < got["3"]["saturation"] < 1 and 0 < got["5"]["sparsity"] < 1  # not trivial cases
    assert "saturation" not in got["5"]  # ReLU has no two flat asymptotes


def test_two_batches_accumulate_like_one_concatenated_batch():
    net = make_net()
    a, b = torch.randn(10, 6), torch.randn(30, 6)
    stats = ActivationStats(net, saturation_eps=EPS)
    with stats, torch.no_grad():
        net(a)
        net(b)
    ref = outputs_of(net, torch.cat([a, b]))
    for name, value in stats.results().items():
        for key, expected in direct(ref[name]).items():
            assert value[key] == pytest.approx(expected, abs=1e-6)
    stats.reset()
    assert stats.results() == {}


def test_histograms_match_numpy_on_the_first_batch():
    net, x = make_net(), torch.randn(50, 6)
    stats = ActivationStats(net, modules=["3", "5"], histogram_bins=12)
    with stats, torch.no_grad():
        net(x)
        net(torch.randn(50, 6) * 100)  # a later batch does not change the histogram
    ref = outputs_of(net, x)
    hists = stats.histograms()
    assert list(hists) == ["3", "5"]
    for name, h in hists.items():
        y = ref[name].numpy().ravel()
        assert (h["min"], h["max"]) == pytest.approx((y.min(), y.max()))
        counts, _ = np.histogram(y, bins=12, range=(y.min(), y.max()))
        np.testing.assert_array_equal(np.array(h["counts"]), counts)
        assert sum(h["counts"]) == y.size


def test_hooks_are_removed_and_keep_no_tensor_alive():
    net = make_net()
    refs = []
    net[3].register_forward_hook(lambda m, i, o: refs.append(weakref.ref(o)))
    stats = ActivationStats(net, histogram_bins=8)
    with stats, torch.no_grad():
        out = net(torch.randn(4, 6))
    del out
    gc.collect()
    assert refs[0]() is None  # the tanh output was freed: the stats keep numbers only
    assert all(len(m._forward_hooks) == (1 if m is net[3] else 0) for m in net)
    before = stats.results()
    with torch.no_grad():
        net(torch.randn(4, 6) * 10)  # detached: nothing is recorded
    assert stats.results() == before


def test_default_selection_and_clear_errors():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    assert list(activation_modules(make_net())) == ["1", "3", "5"]
    assert list(activation_modules(Functional())) == ["a", "b"]  # no activation modules: leaves
    with pytest.raises(ValueError, match="no module named 'nope'"):
        ActivationStats(make_net(), modules=["nope"])
    with pytest.raises(ValueError, match="saturation_eps"):
        ActivationStats(make_net(), saturation_eps=0.7)
    with pytest.raises(TypeError, match="list of module names"):
        ActivationStats(make_net(), modules="1")
