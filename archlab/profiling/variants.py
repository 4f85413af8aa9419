"""Speed of common execution variants relative to the fp32 baseline measured in the same call.

Variants (each on its own deep copy of the model, same inputs, same warm-up/run counts):

* ``channels_last``: NHWC weights and input; applies to models with ``nn.Conv2d`` and 4-D input.
  cuDNN/oneDNN conv kernels prefer it; it changes no arithmetic.
* ``bf16_autocast``: ``torch.autocast(dtype=torch.bfloat16)``. On CUDA when the GPU supports bf16;
  on CPU only with native bf16 (AVX512_BF16/AMX), because emulated bf16 runs ~300x slower than
  fp32 (see archlab.train.precision) and would take minutes to time; ``force_bf16=True`` times it
  anyway.
* ``compile``: ``torch.compile`` (inductor). Its first call compiles (seconds on CUDA, minutes of
  C++ builds on CPU), so on CPU it is skipped unless ``compile_on_cpu=True``; compile time is
  reported separately and not part of the latency.

A skipped variant is reported with ``applied=False`` and the reason, never silently dropped.
``ratio`` is variant median / fp32 median (< 1 is faster); ``max_abs_diff`` is the largest
absolute difference of the variant's outputs from fp32, a check that the variant computes the
same function (bf16 differs by rounding, the others by reordered sums).

Usage::

    for v in measure_variants(model, (3, 224, 224), batch_size=8):
        print(v.name, v.ratio if v.applied else v.reason)
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import nn

from archlab.profiling.latency import (example_batch, model_device, percentile, synchronize,
                                       time_calls)

VARIANTS = ("channels_last", "bf16_autocast", "compile")


@dataclass(frozen=True)
class VariantResult:
    name: str
    applied: bool
    reason: str = ""  # why it was skipped (or a note when applied)
    median_ms: float | None = None
    ratio: float | None = None  # median_ms / fp32 median_ms
    max_abs_diff: float | None = None
    compile_s: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    for o in output:
        if isinstance(o, torch.Tensor):
            return o
    raise TypeError(f"model output of type {type(output).__name__} holds no tensor")


def _skip_reason(name: str, model: nn.Module, inputs: tuple, device: torch.device,
                 compile_on_cpu: bool, force_bf16: bool) -> str:
    if name == "channels_last":
        has_conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        if not has_conv or not (isinstance(inputs[0], torch.Tensor) and inputs[0].ndim == 4):
            return "no Conv2d on 4-D input: memory format does not apply"
    elif name == "bf16_autocast":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bf16 support"
        if device.type == "cpu" and not force_bf16:
            from archlab.train.precision import cpu_has_native_bf16

            if not cpu_has_native_bf16():
                return ("CPU without native bf16 (avx512_bf16/amx): emulated bf16 is ~300x "
                        "slower than fp32; pass force_bf16=True to time it anyway")
        if device.type not in ("cpu", "cuda"):
            return f"bf16 autocast not measured on {device.type}"
    elif name == "compile":
        if not hasattr(torch, "compile"):
            return f"torch {torch.__version__} has no torch.compile"
        if device.type == "cpu" and not compile_on_cpu:
            return ("torch.compile on CPU builds C++ kernels for minutes; pass "
                    "compile_on_cpu=True to measure it")
    else:
        raise ValueError(f"unknown variant '{name}'; choose from {VARIANTS}")
    return ""


def measure_variants(model: nn.Module, input_size: tuple[int, ...], batch_size: int, *,
                     variants: Sequence[str] = VARIANTS, warmup: int = 3, runs: int = 10,
                     compile_on_cpu: bool = False, force_bf16: bool = False
                     ) -> list[VariantResult]:
    """fp32 baseline first, then each requested variant, all in eval mode under
    ``inference_mode`` on the model's device."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; choose from {VARIANTS}")
    device = model_device(model)
    base_model = copy.deepcopy(model).eval()
    inputs = example_batch(base_model, input_size, batch_size, device)

    def timed(net: nn.Module, args: tuple, autocast: bool = False):
        def forward():
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                        enabled=autocast):
                return net(*args)

        reference = _first_tensor(forward()).float()
        return percentile(time_calls(forward, device, warmup=warmup, runs=runs), 50), reference

    base_ms, base_out = timed(base_model, inputs)
    results = [VariantResult("fp32", True, "baseline", base_ms, 1.0, 0.0)]
    for name in variants:
        reason = _skip_reason(name, base_model, inputs, device, compile_on_cpu, force_bf16)
        if reason:
            results.append(VariantResult(name, False, reason))
            continue
        net, args, autocast, compile_s = copy.deepcopy(base_model), inputs, False, None
        try:
            if name == "channels_last":
                net = net.to(memory_format=torch.channels_last)
                args = (inputs[0].contiguous(memory_format=torch.channels_last), *inputs[1:])
            elif name == "bf16_autocast":
                autocast = True
            elif name == "compile":
                net = torch.compile(net)
                start = time.perf_counter()
                with torch.inference_mode():
                    net(*args)  # the first call compiles
                synchronize(device)
                compile_s = time.perf_counter() - start
            ms, out = timed(net, args, autocast)
        except Exception as e:  # a backend that cannot run this model: report, do not abort
            results.append(VariantResult(name, False, f"failed: {type(e).__name__}: "
                                         f"{str(e).splitlines()[0] if str(e) else ''}"))
            continue
        diff = float((out - base_out).abs().max()) if out.shape == base_out.shape else None
        results.append(VariantResult(name, True, "", ms, ms / base_ms, diff, compile_s))
    return results
