"""The metric contract: a stateful accumulator whose state is a few tensors that add up.

Use every metric the same way::

    metric = build_metric("precision_recall_f1", num_classes=10)
    for batch in loader:
        metric.update(model(batch["x"]), batch["y"])  # per batch; nothing is computed yet
    metric.sync(dist)                   # DDP: all-reduce (sum) the state; no-op in one process
    metric.compute()                    # {"precision_macro": 0.91, ...}
    metric.reset()                      # before the next epoch

The state (counts, sums, a confusion matrix, n-gram counts, feature moments) is chosen so that
summing it is exact: the metric over three batches equals the metric over their concatenation,
and the states of two ranks summed equal the state of one process that saw all the data. That is
what makes :meth:`SummedStateMetric.sync` a single ``all_reduce``.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

import torch
import torch.distributed as torch_dist

from archlab.registry import Registry
from archlab.distributed import DistInfo, all_reduce_sum

#: Registered metric classes; ``meta["inputs"]`` says what ``update`` takes:
#: ``"scores"`` -> ``update(logits_or_labels, target)``, ``"text"`` -> ``update(hypotheses,
#: references)``, ``"features"`` -> ``update(x, real=...)``.
METRICS: Registry[type] = Registry("metric")


@runtime_checkable
class Metric(Protocol):
    """What the evaluation loop relies on; :class:`SummedStateMetric` implements all but two."""

    def update(self, *args: Any, **kwargs: Any) -> None:
        ...

    def compute(self) -> dict[str, float | torch.Tensor]:
        ...

    def reset(self) -> None:
        ...

    def state_tensors(self) -> dict[str, torch.Tensor]:
        ...

    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        ...

    def sync(self, dist: DistInfo) -> None:
        ...


class SummedStateMetric:
    """Base class: declare the state with :meth:`add_state`, write ``update`` and ``compute``.

    States are plain attributes (``self.correct``) that ``update`` adds into. They follow the
    device of the tensors passed to ``update`` (so no host sync per batch on CUDA).
    """

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}

    def add_state(self, name: str, default: torch.Tensor) -> None:
        if name in self._defaults:
            raise ValueError(f"{type(self).__name__} state '{name}' is declared twice")
        self._defaults[name] = default.detach().clone()
        setattr(self, name, default.detach().clone())

    def reset(self) -> None:
        for name, default in self._defaults.items():
            setattr(self, name, default.to(getattr(self, name).device, copy=True))

    def to(self, device: torch.device | str) -> "SummedStateMetric":
        for name in self._defaults:
            setattr(self, name, getattr(self, name).to(device))
        return self

    def _follow(self, device: torch.device) -> None:
        """Move the state to ``device`` (the device of the batch being added)."""
        first = next(iter(self._defaults), None)
        if first is not None and getattr(self, first).device != device:
            self.to(device)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """A copy of the state; states of several ranks merge by adding these dicts."""
        return {name: getattr(self, name).clone() for name in self._defaults}

    def load_state_tensors(self, state: Mapping[str, torch.Tensor]) -> None:
        if set(state) != set(self._defaults):
            raise KeyError(f"{type(self).__name__} state needs keys {sorted(self._defaults)}, "
                           f"got {sorted(state)}")
        for name, value in state.items():
            current = getattr(self, name)
            if tuple(value.shape) != tuple(current.shape):
                raise ValueError(f"{type(self).__name__} state '{name}' has shape "
                                 f"{tuple(current.shape)}, got {tuple(value.shape)}")
            setattr(self, name, value.to(current.device, current.dtype, copy=True))

    def sync(self, dist: DistInfo) -> None:
        """Sum the state over all ranks in place (every rank must call it).

        All states travel in one float64 buffer: one collective per metric, and integer counts
        stay exact up to 2**53.
        """
        if not dist.enabled:
            return
        names = list(self._defaults)
        states = [getattr(self, n) for n in names]
        device = states[0].device
        if torch_dist.is_initialized() and torch_dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())  # nccl needs CUDA
        flat = torch.cat([s.reshape(-1).to(device, torch.float64) for s in states])
        all_reduce_sum(flat, dist)
        offset = 0
        for name, s in zip(names, states):
            part = flat[offset:offset + s.numel()].view(s.shape)
            if not s.dtype.is_floating_point:
                part = part.round()
            setattr(self, name, part.to(s.device, s.dtype))
            offset += s.numel()

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float | torch.Tensor]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._defaults)})"


def class_scores(preds: torch.Tensor, target: torch.Tensor,
                 ignore_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten classification inputs: ``preds`` (..., C) scores and ``target`` (...) labels.

    Returns ``(N, C)`` scores and ``(N,)`` int64 labels, dropping positions whose target is
    ``ignore_index`` (padding in sequence tasks).
    """
    if preds.ndim != target.ndim + 1 or preds.shape[:-1] != target.shape:
        raise ValueError(f"expected scores of shape (..., C) for targets {tuple(target.shape)}, "
                         f"got {tuple(preds.shape)}")
    scores, labels = preds.reshape(-1, preds.shape[-1]), target.reshape(-1).long()
    if ignore_index is not None:
        keep = labels != ignore_index
        scores, labels = scores[keep], labels[keep]
    return scores, labels


def class_labels(preds: torch.Tensor, target: torch.Tensor, num_classes: int,
                 ignore_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` predicted and true labels from ``preds`` that are either (..., C) scores
    (argmax taken) or (...) class indices, checked to lie in ``[0, num_classes)``."""
    if preds.shape == target.shape and not preds.is_floating_point():
        pred, true = preds.reshape(-1).long(), target.reshape(-1).long()
        if ignore_index is not None:
            keep = true != ignore_index
            pred, true = pred[keep], true[keep]
    else:
        scores, true = class_scores(preds, target, ignore_index)
        if scores.shape[-1] != num_classes:
            raise ValueError(f"scores have {scores.shape[-1]} classes, metric was built with "
                             f"num_classes={num_classes}")
        pred = scores.argmax(-1)
    for what, labels in (("target", true), ("prediction", pred)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{what} labels must lie in [0, {num_classes}), got "
                             f"[{labels.min().item()}, {labels.max().item()}]")
    return pred, true


def text_segments(hypotheses: Sequence, references: Sequence) -> tuple[list, list[list]]:
    """Validate text-metric inputs; returns hypotheses and, per hypothesis, its list of
    references (strings, or token lists when the hypothesis is a token list)."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be lists with one entry per segment, "
                        "got a single string")
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses but {len(references)} references")
    refs = []
    for i, (hyp, ref) in enumerate(zip(hypotheses, references)):
        if isinstance(hyp, str):
            many = [ref] if isinstance(ref, str) else list(ref)
            ok = bool(many) and all(isinstance(r, str) for r in many)
            want = "a string or a non-empty list of strings"
        else:
            items = [] if isinstance(ref, str) else list(ref)
            many = items if items and not isinstance(items[0], str) else [items]
            ok = (not isinstance(ref, str) and all(not isinstance(r, str) for r in many)
                  and all(isinstance(t, str) for r in many for t in r)
                  and all(isinstance(t, str) for t in hyp))
            many = [list(r) for r in many] if ok else many
            want = "a token list or a list of token lists (the hypothesis is a token list)"
        if not ok:
            raise TypeError(f"segment {i}: references must be {want}, got {ref!r}")
        refs.append(many)
    return list(hypotheses), refs
