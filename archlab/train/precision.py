"""Mixed precision chosen per device.

CUDA: bf16 autocast where the GPU supports it, else fp16 with a GradScaler (fp16's narrow
exponent range needs loss scaling; bf16's does not). CPU: bf16 autocast only on processors with
native bf16 (AVX512_BF16 or AMX); elsewhere bf16 matmuls are emulated — measured ~300x slower
than fp32 on this project's 2-core Xeon — so a bf16 request there warns and stays fp32.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # autocast dtype; None = plain fp32
    use_grad_scaler: bool
    device_type: str

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(flags: set[str] | None = None) -> bool:
    flags = cpu_flags() if flags is None else flags
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve_precision(requested: str, device: torch.device,
                      cpu_flag_set: set[str] | None = None) -> Precision:
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    kind = device.type
    if requested == "fp32":
        return Precision(None, False, kind)
    if kind == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
        if requested == "fp16" or (requested == "auto" and not bf16_ok):
            return Precision(torch.float16, True, kind)
        return Precision(torch.bfloat16, False, kind)
    if kind == "cpu":
        if requested == "auto":
            return Precision(None, False, kind)  # fp32 is fastest on CPUs without AMX
        if requested == "fp16":
            warnings.warn("fp16 autocast is not supported for training on CPU; using fp32",
                          stacklevel=2)
            return Precision(None, False, kind)
        if not cpu_has_native_bf16(cpu_flag_set):
            warnings.warn("bf16 requested but this CPU has no native bf16 (avx512_bf16/amx); "
                          "emulated bf16 is far slower than fp32, so training stays fp32",
                          stacklevel=2)
            return Precision(None, False, kind)
        return Precision(torch.bfloat16, False, kind)
    # mps and others: fp16 autocast is the supported mixed precision
    if requested == "auto":
        return Precision(None, False, kind)
    return Precision(torch.float16 if requested == "fp16" else torch.bfloat16, False, kind)
