"""BatchNorm running statistics vs the data: the tracker's numbers against direct computation,
torch's own running-average update reproducing the short-training failure it warns about, and
the warning in a real run."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from archlab.analysis.bn_stats import (BatchNormStats, BatchNormStatsWarning, batchnorm_modules,
                                       check_batchnorm_stats)
from archlab.runs.config import load_config
from archlab.runs.experiment import run_experiment


def reference(bn: nn.modules.batchnorm._BatchNorm, data: torch.Tensor) -> dict[str, float]:
    """var_ratio and mean_shift from the definition, on all the data at once."""
    dims = [d for d in range(data.ndim) if d != 1]
    x = data.double()
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    rv, rm = bn.running_var.double(), bn.running_mean.double()
    ratio = torch.exp(torch.log((rv + bn.eps) / (var + bn.eps)).mean()).item()
    shift = ((rm - mean).abs() / torch.sqrt(var + bn.eps)).mean().item()
    return {"var_ratio": ratio, "mean_shift": shift, "channels": int(var.numel())}


@pytest.mark.parametrize("shape", [(8, 3, 5, 5), (16, 4), (8, 4, 7)])
def test_statistics_over_several_batches_equal_the_direct_computation(shape):
    g = torch.Generator().manual_seed(0)
    channels = shape[1]
    bn = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[len(shape)](channels)
    bn.running_mean.copy_(torch.randn(channels, generator=g))
    bn.running_var.copy_(torch.rand(channels, generator=g) * 3 + 0.1)
    bn.eval()
    scale = torch.rand(channels, generator=g).view(1, channels, *[1] * (len(shape) - 2)) * 2
    batches = [torch.randn(shape, generator=g) * scale + 0.5 for _ in range(3)]
    tracker = BatchNormStats(nn.Sequential(bn))
    with tracker:
        for b in batches:
            bn(b)
    bn(batches[0])  # detached: not counted
    got = tracker.results()["0"]
    want = reference(bn, torch.cat(batches))
    assert got["channels"] == want["channels"] == channels
    assert got["var_ratio"] == pytest.approx(want["var_ratio"], rel=1e-9)
    assert got["mean_shift"] == pytest.approx(want["mean_shift"], rel=1e-9)


def test_the_statistics_used_by_the_pass_are_the_ones_compared():
    bn = nn.BatchNorm1d(2).eval()
    tracker = BatchNormStats(nn.Sequential(bn))
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    with tracker:
        bn(x)
    want = reference(bn, x)
    bn.running_var.fill_(50.0)  # e.g. EMA swapping the live buffers back after validation
    assert tracker.results()["0"]["var_ratio"] == pytest.approx(want["var_ratio"], rel=1e-9)
    tracker.reset()
    assert tracker.results() == {}


def test_short_training_leaves_the_running_variance_near_its_initial_one_and_is_flagged():
    # GoogLeNet's std-0.01 conv init gives inputs of variance ~1e-3 to its first BN. torch's
    # own running-average update (momentum 0.1, from running_var = 1) after s train-mode
    # batches leaves 0.9^s of the initial 1: 0.15 after 18 steps, 1e-5 after 110.
    g = torch.Generator().manual_seed(2)
    std = 0.03  # variance 9e-4

    def after(steps: int) -> tuple[dict, list[str]]:
        model = nn.Sequential(nn.BatchNorm2d(8))
        model.train()
        for _ in range(steps):
            model(torch.randn(32, 8, 4, 4, generator=g) * std)
        model.eval()
        tracker = BatchNormStats(model)
        with tracker:
            model(torch.randn(256, 8, 4, 4, generator=g) * std)
        layers = tracker.results()
        return layers["0"], check_batchnorm_stats(layers, 10.0)

    short, messages = after(18)
    expected = (0.9 ** 18 + (1 - 0.9 ** 18) * std ** 2) / std ** 2  # the EMA in closed form
    assert short["var_ratio"] == pytest.approx(expected, rel=0.1)  # ~168: sampling noise only
    assert len(messages) == 1 and "'0'" in messages[0] and "1 of 1 BatchNorm" in messages[0]
    settled, messages = after(110)
    assert settled["var_ratio"] == pytest.approx(1.0, abs=0.1) and messages == []


def test_check_names_the_worst_layer_both_ways_and_refuses_bad_thresholds():
    layers = {"a": {"var_ratio": 2.0}, "b": {"var_ratio": 0.01}, "c": {"var_ratio": 30.0}}
    [message] = check_batchnorm_stats(layers, 10.0)
    assert "2 of 3 BatchNorm layers" in message and "worst 'b'" in message
    assert check_batchnorm_stats(layers, None) == []
    assert check_batchnorm_stats(layers, 200.0) == []
    with pytest.raises(ValueError, match="bn_var_ratio must be > 1"):
        check_batchnorm_stats(layers, 0.5)


def test_models_without_batchnorm_have_nothing_to_track():
    assert batchnorm_modules(nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))) == {}
    frozen = nn.BatchNorm2d(3, track_running_stats=False)
    assert batchnorm_modules(nn.Sequential(frozen)) == {}


def test_real_run_records_every_epoch_and_warns_past_the_threshold(tiny_overrides, runs_dir):
    import json

    # A threshold just above 1 turns any mismatch into a warning: checks the wiring, not BN.
    cfg = load_config(None, tiny_overrides + [
        "diagnostics={bn_stats: true, bn_var_ratio: 1.000001, plots: false}"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_experiment(cfg, runs_dir=runs_dir)
    assert result.ok, result.error
    records = [json.loads(line) for line in
               (result.run_dir / "diagnostics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and {r["kind"] for r in records} == {"bn_stats"}
    assert all(r["warnings"] for r in records)
    assert sum("batchnorm statistics" in str(w.message) for w in caught
               if issubclass(w.category, BatchNormStatsWarning)) == 1  # once per run
    # Two epochs of digits (~50 steps) leave cnn_tiny's running variances within 2x of the data.
    assert all(0.5 < v["var_ratio"] < 2 for v in records[-1]["layers"].values())
    assert math.isfinite(records[-1]["layers"]["stages.0.0.2"]["mean_shift"])
