"""Latency statistics against numpy, the timing protocol (warm-up, runs, eval/inference mode),
training throughput on a copy, and the execution variants' bookkeeping. No speed asserts."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from archlab.models import create_model
from archlab.profiling import (latency_stats, measure_latency, measure_train_throughput,
                               measure_variants, percentile)
from archlab.profiling.latency import surrogate_loss, time_calls


@pytest.mark.parametrize("n", [1, 2, 7, 10, 101])
def test_percentile_matches_numpy(n):
    samples = np.random.default_rng(n).exponential(5.0, size=n).tolist()
    for q in (0, 10, 25, 50, 90, 99, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q), rel=1e-12)


def test_latency_stats_from_measured_samples():
    samples = [12.0, 3.0, 7.5, 9.0, 4.25, 30.0, 5.0, 6.0]
    s = latency_stats(samples, batch_size=4)
    assert s.median_ms == pytest.approx(np.median(samples))
    assert s.p90_ms == pytest.approx(np.percentile(samples, 90))
    assert s.mean_ms == pytest.approx(np.mean(samples)) and s.min_ms == 3.0 and s.runs == 8
    assert s.samples_per_s == pytest.approx(4 / (np.median(samples) / 1000))
    with pytest.raises(ValueError, match="at least one"):
        latency_stats([], batch_size=1)
    with pytest.raises(ValueError, match="q must be"):
        percentile([1.0], 150)


def test_time_calls_warms_up_then_times_each_run():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    times = time_calls(fn, torch.device("cpu"), warmup=2, runs=3)
    assert len(calls) == 5 and len(times) == 3
    assert all(t >= 2.0 for t in times)  # a sleep of 2 ms lasts at least 2 ms
    with pytest.raises(ValueError, match="runs >= 1"):
        time_calls(fn, torch.device("cpu"), warmup=0, runs=0)


def _tiny_cnn():
    torch.manual_seed(0)
    return create_model("cnn_tiny", num_classes=10, in_chans=1, img_size=8)


def test_measure_latency_runs_in_eval_inference_mode_per_batch_size():
    model = _tiny_cnn()
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(
        (m.training, torch.is_inference_mode_enabled(), i[0].shape[0])))
    stats = measure_latency(model, (1, 8, 8), [1, 4], warmup=1, runs=2)
    assert [s.batch_size for s in stats] == [1, 4] and all(s.runs == 2 for s in stats)
    assert seen == [(False, True, 1)] * 3 + [(False, True, 4)] * 3
    assert model.training  # restored


def test_train_throughput_steps_a_copy():
    model = _tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    # deepcopy keeps hook functions (not copied): this sees the copy's forwards
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, torch.is_grad_enabled())))
    t = measure_train_throughput(model, (1, 8, 8), batch_size=3, warmup=1, runs=2)
    assert seen == [(True, True)] * 3
    assert t.samples_per_s == pytest.approx(3 / (t.median_step_ms / 1000))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in model.parameters())


def test_surrogate_loss_reaches_every_float_output():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([[3.0]], requires_grad=True)
    loss = surrogate_loss({"x": a, "pair": (b, torch.tensor([7]))})
    assert loss.item() == pytest.approx((1 + 4) / 2 + 9)
    loss.backward()
    assert torch.allclose(a.grad, a.detach()) and torch.allclose(b.grad, 2 * b.detach())
    with pytest.raises(TypeError, match="floating-point"):
        surrogate_loss(torch.tensor([1, 2]))


def test_variants_report_ratios_and_reasons():
    model = _tiny_cnn().eval()
    results = {v.name: v for v in measure_variants(model, (1, 8, 8), batch_size=2, warmup=0,
                                                     runs=2, force_bf16=True)}
    assert results["fp32"].ratio == 1.0
    cl = results["channels_last"]
    assert cl.applied and cl.ratio == pytest.approx(cl.median_ms / results["fp32"].median_ms)
    assert cl.max_abs_diff < 1e-5  # same function, only the memory layout changed
    bf16 = results["bf16_autocast"]
    assert bf16.applied and 0 < bf16.max_abs_diff < 0.1  # bf16 rounding: close, not equal
    assert not results["compile"].applied and "compile_on_cpu" in results["compile"].reason

    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    (base, cl_mlp) = measure_variants(mlp, (4,), 1, variants=["channels_last"], warmup=0, runs=1)
    assert base.name == "fp32" and not cl_mlp.applied and "Conv2d" in cl_mlp.reason
    with pytest.raises(ValueError, match="unknown variant"):
        measure_variants(mlp, (4,), 1, variants=["fp8"])
