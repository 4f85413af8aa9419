"""Per-layer model summary: output shape, own parameters, FLOPs and MACs of every module.

Usage::

    with torch.device("meta"):                      # no memory, no arithmetic: instant
        model = create_model("resnet50")
    s = summarize(model, (3, 224, 224))
    s.total_flops == count_flops(model, (3, 224, 224))   # always
    for layer in s.layers: print(layer.name, layer.output_shape, layer.params, layer.flops)

FLOPs are torch.utils.flop_counter's: only conv, mm/addmm/bmm, baddbmm and scaled-dot-product
attention are counted, 2 FLOPs per multiply-accumulate, so **MACs = FLOPs / 2** exactly. Biases,
normalization, activations, pooling and elementwise ops count 0 (fvcore and ptflops count some of
them, hence their slightly larger totals in the torchvision manifest). Counts are for one forward
pass at batch size 1 in eval mode under ``no_grad``, the same protocol as
:func:`archlab.models._factory.count_flops`, so ``total_flops`` equals it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.models._factory import example_inputs

GLOBAL_KEY = "Global"  # FlopCounterMode's key for every op, inside a module or not


@dataclass(frozen=True)
class LayerStats:
    """One module's own cost. ``params`` and ``flops`` exclude the module's children, so the
    column sums of :attr:`ModelSummary.layers` are the model totals."""

    name: str  # fully qualified name, "" for the root module
    type: str
    depth: int  # 0 for the root, 1 for its children, ...
    output_shape: Any  # list of ints, a list of such lists for tuple outputs, or None (not called)
    params: int
    trainable_params: int
    flops: int
    calls: int  # > 1 for modules run several times per forward (shared blocks, RNN cells)

    @property
    def macs(self) -> int:
        return self.flops // 2

    def to_dict(self) -> dict:
        return {**asdict(self), "macs": self.macs}


@dataclass(frozen=True)
class ModelSummary:
    input_size: tuple[int, ...]
    layers: list[LayerStats]
    total_params: int
    trainable_params: int
    total_flops: int
    # FLOPs of ops run outside every module of the model (a functional op in a caller): they are
    # in the total but in no layer's row; 0 for a model called directly.
    unattributed_flops: int = 0
    flops_by_op: dict[str, int] = field(default_factory=dict)

    @property
    def total_macs(self) -> int:
        return self.total_flops // 2

    def fold(self, max_depth: int) -> list[LayerStats]:
        """Rows down to ``max_depth``; deeper modules' params and FLOPs are added to their
        ancestor at ``max_depth`` (so the sums still equal the totals)."""
        if max_depth < 0:
            raise ValueError(f"max_depth must be >= 0, got {max_depth}")
        kept = {layer.name: layer for layer in self.layers if layer.depth <= max_depth}
        extra: dict[str, list[int]] = {name: [0, 0, 0] for name in kept}
        for layer in self.layers:
            if layer.depth <= max_depth:
                continue
            ancestor = ".".join(layer.name.split(".")[:max_depth]) if max_depth else ""
            acc = extra.get(ancestor, extra[""])
            acc[0] += layer.params
            acc[1] += layer.trainable_params
            acc[2] += layer.flops
        return [LayerStats(row.name, row.type, row.depth, row.output_shape,
                           row.params + extra[row.name][0],
                           row.trainable_params + extra[row.name][1],
                           row.flops + extra[row.name][2], row.calls) for row in kept.values()]

    def to_dict(self) -> dict:
        return {"input_size": list(self.input_size), "total_params": self.total_params,
                "trainable_params": self.trainable_params, "total_flops": self.total_flops,
                "total_macs": self.total_macs, "unattributed_flops": self.unattributed_flops,
                "flops_by_op": dict(self.flops_by_op),
                "layers": [layer.to_dict() for layer in self.layers]}


def _shape_of(output: Any) -> Any:
    if isinstance(output, torch.Tensor):
        return list(output.shape)
    if isinstance(output, (tuple, list)):
        shapes = [_shape_of(o) for o in output]
        return shapes if any(s is not None for s in shapes) else None
    if isinstance(output, dict):
        return _shape_of(list(output.values()))
    return None


def _own_params(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(params, trainable) per module, each shared parameter given to the first module that
    holds it, so the per-module numbers add up to ``sum(p.numel() for p in model.parameters())``."""
    seen: set[int] = set()
    own: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        total = trainable = 0
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            total += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        own[name] = (total, trainable)
    return own


def _own_flops(counts: dict[str, dict[Any, int]]) -> dict[str, int]:
    """FlopCounterMode counts are inclusive (a module's count contains its children's); subtract
    each key's nearest counted descendants. The keys form a tree by their dotted prefixes with
    ``Global`` as root, so the own counts telescope to exactly the Global total."""
    inclusive = {key: sum(ops.values()) for key, ops in counts.items()}
    own = dict(inclusive)
    for key in inclusive:
        if key == GLOBAL_KEY:
            continue
        parts = key.split(".")
        parent = GLOBAL_KEY
        for cut in range(len(parts) - 1, 0, -1):
            candidate = ".".join(parts[:cut])
            if candidate in inclusive:
                parent = candidate
                break
        own[parent] -= inclusive[key]
    return own


def summarize(model: nn.Module, input_size: tuple[int, ...] | None = None,
              inputs: tuple | None = None) -> ModelSummary:
    """Per-layer summary of one batch-1 forward pass (eval mode, ``no_grad``).

    ``input_size`` is (C, H, W) for images (default: ``model.default_cfg.input_size``); models
    with an ``example_inputs`` method (token models) use it instead. ``inputs`` overrides both.
    Works on the ``meta`` device, which is the fast way to summarize a large model.
    """
    from torch.utils.flop_counter import FlopCounterMode

    if input_size is None:
        cfg = getattr(model, "default_cfg", None)
        if cfg is None and inputs is None:
            raise ValueError(f"{type(model).__name__} has no default_cfg; "
                             "pass input_size=(C, H, W)")
        input_size = tuple(cfg.input_size) if cfg is not None else ()
    input_size = tuple(int(s) for s in input_size)
    if inputs is None:
        inputs = example_inputs(model, input_size)

    modules = dict(model.named_modules())
    name_of = {id(m): n for n, m in modules.items()}
    order: list[str] = []
    calls: dict[str, int] = {}
    shapes: dict[str, Any] = {}

    def pre_hook(module, _args):
        name = name_of[id(module)]
        if name not in calls:
            order.append(name)
        calls[name] = calls.get(name, 0) + 1

    def post_hook(module, _args, output):
        shapes.setdefault(name_of[id(module)], _shape_of(output))

    handles = []
    for m in modules.values():
        handles += [m.register_forward_pre_hook(pre_hook), m.register_forward_hook(post_hook)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    counts = counter.get_flop_counts()
    own_by_key = _own_flops(counts)
    # ModuleTracker names the root by its class and children by their attribute path.
    root_key = type(model).__name__
    flops: dict[str, int] = {}
    unattributed = own_by_key.pop(GLOBAL_KEY, 0)
    for key, value in own_by_key.items():
        if key == root_key:
            name = ""
        elif key.startswith(root_key + "."):
            path = key[len(root_key) + 1:]
            # A module registered under two paths is tracked under its last one: map back by
            # identity to the first path, the one named_modules() reports.
            try:
                name = name_of[id(model.get_submodule(path))]
            except AttributeError:
                name = None
        else:
            name = None
        if name is None:
            unattributed += value
        else:
            flops[name] = flops.get(name, 0) + value

    own_params = _own_params(model)
    names = order + [n for n in modules if n not in calls]
    layers = [LayerStats(name=n, type=type(modules[n]).__name__,
                         depth=0 if n == "" else n.count(".") + 1,
                         output_shape=shapes.get(n), params=own_params[n][0],
                         trainable_params=own_params[n][1], flops=flops.get(n, 0),
                         calls=calls.get(n, 0)) for n in names]
    by_op = {str(op).removeprefix("aten."): int(v)
             for op, v in counts.get(GLOBAL_KEY, {}).items()}
    return ModelSummary(
        input_size=input_size, layers=layers,
        total_params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total_flops=int(counter.get_total_flops()), unattributed_flops=int(unattributed),
        flops_by_op=by_op)
