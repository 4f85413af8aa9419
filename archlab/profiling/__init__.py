"""What a model costs: parameters, FLOPs/MACs, latency, throughput, memory, execution variants.

The short path::

    from archlab.profiling import profile
    report = profile("resnet50", batch_sizes=[1, 8])
    print(report.format(per_layer=True))      # or report.to_json()

``profile`` takes a registered model name or an ``nn.Module``; static figures (params, FLOPs, the
per-layer table) of a named model are computed on the ``meta`` device (no memory, no arithmetic),
the measured ones (latency, memory, throughput, variants) on ``device``. Each piece is usable on
its own: :func:`summarize`, :func:`measure_latency`, :func:`measure_train_throughput`,
:func:`measure_memory`, :func:`measure_variants`; :func:`compare` and :func:`plot_pareto` put
several models and trained runs side by side.
"""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Annotated, Any, Optional

import torch
from pydantic import Field
from torch import nn

from archlab.config import config_dataclass
from archlab.profiling.compare import (RunTarget, compare, comparison_table,                                        pareto_front, plot_pareto)
from archlab.profiling.latency import (LatencyStats, TrainThroughput, latency_stats,
                                       measure_latency, measure_train_throughput, model_device,
                                       percentile)
from archlab.profiling.memory import MemoryStats, activation_bytes, measure_memory, peak_bytes
from archlab.profiling.report import ProfileReport
from archlab.profiling.summary import LayerStats, ModelSummary, summarize
from archlab.profiling.variants import VARIANTS, VariantResult, measure_variants

PositiveInt = Annotated[int, Field(gt=0)]


@config_dataclass
class ProfileConfig:
    batch_sizes: list[PositiveInt] = field(default_factory=lambda: [1])
    """Batch sizes for latency, memory and training throughput; [] measures nothing at run time."""
    input_size: Optional[list[PositiveInt]] = None
    """(C, H, W); default: the model's default_cfg.input_size."""
    device: Optional[str] = None
    """auto, cpu, cuda, cuda:1, mps; default: auto for a model name, the module's own device
    for an nn.Module."""
    warmup: Annotated[int, Field(ge=0)] = 3
    """Untimed calls before timing."""
    runs: PositiveInt = 10
    """Timed calls per batch size (median and p90 are over these)."""
    memory: bool = True
    """Activation and peak memory per batch size."""
    train_throughput: bool = False
    """Also time full training steps (forward, backward, SGD step) per batch size."""
    variants: bool = False
    """Also time channels_last, bf16 autocast and torch.compile at the largest batch size."""
    compile_on_cpu: bool = False
    """Time torch.compile on CPU too (minutes of C++ compilation)."""
    force_bf16: bool = False
    """Time bf16 autocast even on a CPU without native bf16 (emulated, very slow)."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Builder options for a model name, e.g. {num_classes: 10, in_chans: 1}."""


def _build_named(name: str, options: dict[str, Any], device: torch.device | str) -> nn.Module:
    from archlab.models import create_model

    with torch.device(device):
        return create_model(name, **options)


def profile(model_or_name: nn.Module | str, *, target: str | None = None,
            accuracy: float | None = None, **options: Any) -> ProfileReport:
    """Profile a registered model (by name) or a module; ``options`` are :class:`ProfileConfig`
    fields (an unknown or ill-typed one raises a ValueError naming it). ``target`` and
    ``accuracy`` label the report (the CLI passes a run id and its test.acc)."""
    from archlab.train.device import resolve_device

    cfg = ProfileConfig(**options)
    if isinstance(model_or_name, str):
        name = model_or_name
        static_model = _build_named(name, cfg.model_options, "meta")
        device = resolve_device(cfg.device or "auto")
        live = None  # built on demand below
    elif isinstance(model_or_name, nn.Module):
        if cfg.model_options:
            raise ValueError("model_options apply to a model name, not to an nn.Module")
        name = type(model_or_name).__name__
        static_model = model_or_name
        own_device = model_device(model_or_name)
        device = own_device if cfg.device is None else resolve_device(cfg.device)
        live = model_or_name if device == own_device else copy.deepcopy(model_or_name).to(device)
    else:
        raise TypeError(f"profile() takes a model name or an nn.Module, got "
                        f"{type(model_or_name).__name__}")

    default_cfg = getattr(static_model, "default_cfg", None)
    if cfg.input_size is not None:
        input_size = tuple(cfg.input_size)
    elif default_cfg is not None:
        input_size = tuple(default_cfg.input_size)
    else:
        raise ValueError(f"{name} has no default_cfg.input_size; pass input_size=[C, H, W]")
    summary = summarize(static_model, input_size)
    report = ProfileReport(target=target or name, model=name, input_size=input_size,
                           device=str(device), params=summary.total_params,
                           trainable_params=summary.trainable_params, flops=summary.total_flops,
                           summary=summary, accuracy=accuracy, torch_version=torch.__version__)
    if not cfg.batch_sizes:
        return report
    if device.type == "meta":
        raise ValueError("a model on the 'meta' device has no run-time cost to measure; pass "
                         "batch_sizes=[] for params and FLOPs only, or device='cpu'")
    if live is None:
        live = _build_named(name, cfg.model_options, device)
    report.latency = measure_latency(live, input_size, cfg.batch_sizes, warmup=cfg.warmup,
                                     runs=cfg.runs)
    if cfg.memory:
        report.memory = [measure_memory(live, input_size, b) for b in cfg.batch_sizes]
    if cfg.train_throughput:
        report.train = [measure_train_throughput(live, input_size, b, warmup=cfg.warmup,
                                                 runs=cfg.runs) for b in cfg.batch_sizes]
    if cfg.variants:
        report.variants = measure_variants(live, input_size, max(cfg.batch_sizes),
                                           warmup=cfg.warmup, runs=cfg.runs,
                                           compile_on_cpu=cfg.compile_on_cpu,
                                           force_bf16=cfg.force_bf16)
    return report


__all__ = ["VARIANTS", "LatencyStats", "LayerStats", "MemoryStats", "ModelSummary",
           "ProfileConfig", "ProfileReport", "RunTarget", "TrainThroughput", "VariantResult",
           "activation_bytes", "compare", "comparison_table", "latency_stats",
           "measure_latency", "measure_memory", "measure_train_throughput", "measure_variants",
           "pareto_front", "peak_bytes", "percentile", "plot_pareto", "profile", "summarize"]
