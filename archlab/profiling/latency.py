"""Inference latency per batch size and training throughput, on any device.

Usage::

    stats = measure_latency(model, (3, 224, 224), batch_sizes=[1, 8], warmup=3, runs=10)
    stats[0].median_ms, stats[0].p90_ms, stats[0].samples_per_s
    train = measure_train_throughput(model, (3, 224, 224), batch_size=8)

Protocol: ``warmup`` untimed calls (allocator, oneDNN/cuDNN autotuning, lazy init), then
``runs`` timed calls, each timed alone with ``time.perf_counter`` and bracketed by a device
synchronize on CUDA/MPS so asynchronous kernels are inside the interval. The median is the
headline (robust to a stray slow run on a shared machine); p90 shows the tail. Throughput is
``batch_size / median``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch
from torch import nn


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile with linear interpolation between order statistics
    (Hyndman & Fan type 7, numpy's default ``method="linear"``)."""
    if not samples:
        raise ValueError("percentile of an empty sample list")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(float(s) for s in samples)
    h = (len(xs) - 1) * q / 100.0  # fractional rank, 0-based
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


@dataclass(frozen=True)
class LatencyStats:
    batch_size: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / (self.median_ms / 1000.0) if self.median_ms > 0 else math.inf

    def to_dict(self) -> dict:
        return {**asdict(self), "samples_per_s": self.samples_per_s}


def latency_stats(samples_ms: Sequence[float], batch_size: int) -> LatencyStats:
    """Summary statistics of measured per-call times (milliseconds)."""
    if not samples_ms:
        raise ValueError("latency_stats needs at least one timed run")
    return LatencyStats(batch_size=batch_size, median_ms=percentile(samples_ms, 50),
                        p90_ms=percentile(samples_ms, 90),
                        mean_ms=sum(samples_ms) / len(samples_ms), min_ms=min(samples_ms),
                        runs=len(samples_ms))


def model_device(model: nn.Module) -> torch.device:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), torch.zeros(()))
    return tensor.device


def example_batch(model: nn.Module, input_size: tuple[int, ...], batch_size: int,
                  device: torch.device | None = None) -> tuple:
    """Forward arguments for ``batch_size`` samples: the model's own ``example_inputs(B)`` when it
    has one (token ids), else standard-normal images of ``input_size``."""
    device = model_device(model) if device is None else device
    if hasattr(model, "example_inputs"):
        inputs = model.example_inputs(batch_size)
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        return tuple(t.to(device) if isinstance(t, torch.Tensor) else t for t in inputs)
    return (torch.randn(batch_size, *input_size, device=device),)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_calls(fn: Callable[[], object], device: torch.device, *, warmup: int,
               runs: int) -> list[float]:
    """Per-call wall times in milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    if warmup < 0 or runs < 1:
        raise ValueError(f"need warmup >= 0 and runs >= 1, got warmup={warmup}, runs={runs}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def measure_latency(model: nn.Module, input_size: tuple[int, ...], batch_sizes: Sequence[int], *,
                    warmup: int = 3, runs: int = 10) -> list[LatencyStats]:
    """Eval-mode ``inference_mode`` latency of a forward pass, one entry per batch size, on the
    device the model lives on."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    results = []
    try:
        for batch_size in batch_sizes:
            inputs = example_batch(model, input_size, batch_size, device)

            def forward():
                with torch.inference_mode():
                    model(*inputs)

            results.append(latency_stats(time_calls(forward, device, warmup=warmup, runs=runs),
                                         batch_size))
    finally:
        model.train(was_training)
    return results


def _float_tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in _float_tensors(o)]
    return []


def surrogate_loss(output) -> torch.Tensor:
    """Mean of squares of every floating output tensor: a loss that needs the whole backward pass
    for any model (classifier, autoencoder, LM) at the cost of one elementwise op, so training
    throughput measures the model and not a particular criterion."""
    terms = [t.float().square().mean() for t in _float_tensors(output)]
    if not terms:
        raise TypeError(f"cannot build a training loss from a model output of type "
                        f"{type(output).__name__}: it holds no floating-point tensor")
    return torch.stack(terms).sum()


@dataclass(frozen=True)
class TrainThroughput:
    batch_size: int
    median_step_ms: float
    p90_step_ms: float
    runs: int

    @property
    def samples_per_s(self) -> float:
        return self.batch_size / (self.median_step_ms / 1000.0)

    def to_dict(self) -> dict:
        return {**asdict(self), "samples_per_s": self.samples_per_s}


def measure_train_throughput(model: nn.Module, input_size: tuple[int, ...], batch_size: int, *,
                             warmup: int = 2, runs: int = 5, lr: float = 1e-4) -> TrainThroughput:
    """Samples/s of full training steps (train-mode forward, :func:`surrogate_loss`, backward,
    SGD step with ``zero_grad(set_to_none=True)``). Runs on a deep copy, so the caller's weights
    and BatchNorm statistics are untouched."""
    trainee = copy.deepcopy(model).train()
    device = model_device(trainee)
    params = [p for p in trainee.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"{type(model).__name__} has no trainable parameters to time a step of")
    optimizer = torch.optim.SGD(params, lr=lr)
    inputs = example_batch(trainee, input_size, batch_size, device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        surrogate_loss(trainee(*inputs)).backward()
        optimizer.step()

    times = time_calls(step, device, warmup=warmup, runs=runs)
    return TrainThroughput(batch_size=batch_size, median_step_ms=percentile(times, 50),
                           p90_step_ms=percentile(times, 90), runs=runs)
