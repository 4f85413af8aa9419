"""ProfileReport: what :func:`archlab.profiling.profile` measured, as a terminal table or JSON.

Usage::

    report = profile("resnet18", batch_sizes=[1, 8])
    print(report.format(per_layer=True))
    Path("resnet18.json").write_text(report.to_json())
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from archlab.profiling.latency import LatencyStats, TrainThroughput
from archlab.profiling.memory import MemoryStats
from archlab.profiling.summary import ModelSummary
from archlab.profiling.variants import VariantResult


def human(n: float | None, unit: str = "") -> str:
    """1234567 -> '1.23M' (decimal prefixes, as papers quote params and FLOPs)."""
    if n is None:
        return "-"
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{prefix}{unit}"
    return f"{n:.0f}{unit}" if isinstance(n, int) or float(n).is_integer() else f"{n:.2f}{unit}"


def mib(nbytes: int | None) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.2f}"


def text_table(header: list[str], rows: list[list[Any]], right: set[int] | None = None) -> str:
    """Aligned columns; columns in ``right`` (numbers) are right-aligned."""
    right = set() if right is None else right
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths),
                      *[line(r) for r in cells[1:]]])


def _shape(shape: Any) -> str:
    if shape is None:
        return "-"
    if shape and isinstance(shape[0], list):
        return ", ".join(_shape(s) for s in shape)
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass
class ProfileReport:
    target: str  # what was asked for: a model name or a run id
    model: str  # registry name (or class name for a bare nn.Module)
    input_size: tuple[int, ...]
    device: str
    params: int
    trainable_params: int
    flops: int  # forward FLOPs for one sample (batch 1), torch.utils.flop_counter convention
    summary: ModelSummary | None = None
    latency: list[LatencyStats] = field(default_factory=list)
    memory: list[MemoryStats] = field(default_factory=list)
    train: list[TrainThroughput] = field(default_factory=list)
    variants: list[VariantResult] = field(default_factory=list)
    accuracy: float | None = None  # the run's test.acc, for runs
    torch_version: str = ""

    @property
    def macs(self) -> int:
        return self.flops // 2

    def to_dict(self, per_layer: bool = True) -> dict:
        return {
            "target": self.target, "model": self.model, "input_size": list(self.input_size),
            "device": self.device, "torch": self.torch_version, "accuracy": self.accuracy,
            "params": self.params, "trainable_params": self.trainable_params,
            "flops": self.flops, "macs": self.macs,
            "latency": [s.to_dict() for s in self.latency],
            "memory": [m.to_dict() for m in self.memory],
            "train": [t.to_dict() for t in self.train],
            "variants": [v.to_dict() for v in self.variants],
            "layers": (self.summary.to_dict()["layers"]
                       if per_layer and self.summary is not None else None),
        }

    def to_json(self, per_layer: bool = True, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(per_layer), indent=indent)

    def format(self, per_layer: bool = False, max_depth: int | None = None) -> str:
        """The terminal report; ``per_layer`` adds the module table (folded to ``max_depth``)."""
        size = "x".join(map(str, self.input_size))
        lines = [f"{self.target}" + (f" ({self.model})" if self.model != self.target else ""),
                 f"  input       {size} on {self.device} (torch {self.torch_version})",
                 f"  params      {self.params:,} ({human(self.params)}), trainable "
                 f"{self.trainable_params:,}",
                 f"  FLOPs       {self.flops:,} ({human(self.flops)}) per sample",
                 f"  MACs        {self.macs:,} ({human(self.macs)})"]
        if self.accuracy is not None:
            lines.append(f"  test.acc    {self.accuracy:.4f}")
        if self.memory:
            m = self.memory[0]
            lines.append(f"  weights     {mib(m.param_bytes)} MiB params + "
                         f"{mib(m.buffer_bytes)} MiB buffers")
        if self.latency or self.memory:
            lines += ["", self._batch_table()]
            if self.memory:
                lines.append(f"(peak memory: {self.memory[0].peak_method}; MiB above what was "
                             "allocated before the pass)")
        if self.variants:
            rows = [[v.name, f"{v.median_ms:.2f}" if v.median_ms is not None else "-",
                     f"{v.ratio:.2f}x" if v.ratio is not None else "-",
                     f"{v.max_abs_diff:.2e}" if v.max_abs_diff is not None else "-",
                     v.reason if not v.applied else (f"compiled in {v.compile_s:.1f} s"
                                                     if v.compile_s else "")]
                    for v in self.variants]
            lines += ["", text_table(["variant", "median ms", "vs fp32", "max |diff|", "note"],
                                     rows, right={1, 2, 3})]
        if per_layer and self.summary is not None:
            lines += ["", self._layer_table(max_depth)]
        return "\n".join(lines)

    def _batch_table(self) -> str:
        lat = {s.batch_size: s for s in self.latency}
        mem = {m.batch_size: m for m in self.memory}
        train = {t.batch_size: t for t in self.train}
        header = ["batch", "median ms", "p90 ms", "samples/s"]
        if mem:
            header += ["activations MiB", "peak infer MiB", "peak train MiB"]
        if train:
            header += ["train samples/s"]
        rows = []
        for b in sorted(set(lat) | set(mem) | set(train)):
            s = lat.get(b)
            row = [b, f"{s.median_ms:.2f}" if s else "-", f"{s.p90_ms:.2f}" if s else "-",
                   f"{s.samples_per_s:.1f}" if s else "-"]
            if mem:
                m = mem.get(b)
                row += [mib(m.activation_bytes), mib(m.peak_inference_bytes),
                        mib(m.peak_train_bytes)] if m else ["-"] * 3
            if train:
                row.append(f"{train[b].samples_per_s:.1f}" if b in train else "-")
            rows.append(row)
        return text_table(header, rows, right=set(range(len(header))))

    def _layer_table(self, max_depth: int | None) -> str:
        s = self.summary
        layers = s.layers if max_depth is None else s.fold(max_depth)
        rows = [["  " * max(layer.depth - 1, 0) + (layer.name or "(root)"), layer.type,
                 _shape(layer.output_shape), f"{layer.params:,}" if layer.params else "-",
                 f"{layer.flops:,}" if layer.flops else "-",
                 f"{layer.macs:,}" if layer.flops else "-"] for layer in layers]
        if s.unattributed_flops:
            rows.append(["(outside modules)", "", "", "-", f"{s.unattributed_flops:,}",
                         f"{s.unattributed_flops // 2:,}"])
        rows.append(["total", "", "", f"{s.total_params:,}", f"{s.total_flops:,}",
                     f"{s.total_macs:,}"])
        table = text_table(["layer", "type", "output shape", "params", "FLOPs", "MACs"], rows,
                           right={3, 4, 5})
        return (f"per layer (own params and FLOPs, children excluded; batch 1)\n{table}\n"
                f"trainable params {s.trainable_params:,} of {s.total_params:,}")
