"""Parameter, activation and peak memory of a model, with each quantity defined precisely.

* **parameter bytes**: ``sum(p.numel() * p.element_size())`` over unique parameters; buffers
  (BatchNorm running statistics) are reported separately.
* **activation bytes**: the memory autograd keeps alive between a training forward pass and its
  backward: every tensor saved for backward, captured with
  ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage (a ReLU output saved by
  the ReLU and by the next conv is one allocation) and excluding storages of the model's
  parameters and buffers (they exist anyway). The input batch counts when an op saves it (the
  first conv does). This is the quantity activation checkpointing trades for recompute.
* **peak bytes**: the highest amount of memory allocated *on top of what was allocated before the
  pass* (weights, inputs), during an inference forward pass (``inference_mode``) or a training
  pass (train-mode forward + backward, gradients included, no optimizer state).
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: the running
  sum of the allocation and free events of c10's CPU allocator that ``torch.profiler`` records
  with ``profile_memory=True``; it sees every tensor storage, not memory that libraries allocate
  behind the allocator's back (oneDNN scratch space, Python objects).

Usage::

    stats = measure_memory(model, (3, 224, 224), batch_size=8)
    stats.activation_bytes, stats.peak_train_bytes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn
from torch.autograd import DeviceType

from archlab.profiling.latency import example_batch, model_device, surrogate_loss, synchronize


def parameter_bytes(model: nn.Module) -> tuple[int, int]:
    """(parameter bytes, buffer bytes) of the model's unique tensors."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return params, buffers


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def activation_bytes(model: nn.Module, inputs: tuple) -> int:
    """Bytes of the distinct storages autograd saves for backward during one train-mode forward
    pass of ``model(*inputs)``. BatchNorm running statistics are restored afterwards."""
    if model_device(model).type == "meta":
        raise ValueError("activation_bytes needs a model with real tensors, not on the 'meta' "
                         "device: saved storages are told apart by their addresses")
    owned = {_storage_key(t)[0] for t in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        try:
            ptr, nbytes = _storage_key(t)
        except (RuntimeError, NotImplementedError):  # no plain storage (sparse, nested, ...)
            ptr, nbytes = id(t), t.numel() * t.element_size()
        if ptr not in owned:
            saved[ptr] = max(saved.get(ptr, 0), nbytes)
        return t

    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            output = model(*inputs)
        del output  # frees the graph and the saved tensors
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    return sum(saved.values())


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    try:
        events = prof.profiler.kineto_results.events()
    except AttributeError as e:  # the raw event list is what gives allocations with timestamps
        raise RuntimeError(f"this torch ({torch.__version__}) profiler exposes no raw memory "
                           "events; CPU peak memory is unavailable") from e
    # "[memory]" events: +nbytes at an allocation, -nbytes at a free, in time order.
    allocations = sorted((e.start_ns(), e.nbytes()) for e in events
                         if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    live = peak = 0
    for _, nbytes in allocations:
        live += nbytes
        peak = max(peak, live)
    return peak


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int | None:
    """Peak bytes allocated by ``fn()`` above those allocated before it (None on devices other
    than CPU and CUDA)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    if device.type == "cpu":
        return _cpu_peak_bytes(fn)
    return None


@dataclass(frozen=True)
class MemoryStats:
    batch_size: int
    param_bytes: int
    buffer_bytes: int
    activation_bytes: int
    peak_inference_bytes: int | None
    peak_train_bytes: int | None
    peak_method: str

    def to_dict(self) -> dict:
        return asdict(self)


def measure_memory(model: nn.Module, input_size: tuple[int, ...], batch_size: int) -> MemoryStats:
    """All memory figures for one batch size on the model's device (module docstring defines
    them). Gradients created for the training peak are dropped again."""
    device = model_device(model)
    inputs = example_batch(model, input_size, batch_size, device)
    params, buffers = parameter_bytes(model)
    activations = activation_bytes(model, inputs)
    was_training = model.training
    saved_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    grads_before = {p: p.grad for p in model.parameters()}

    def infer():
        with torch.inference_mode():
            model(*inputs)

    def train_pass():
        with torch.enable_grad():
            surrogate_loss(model(*inputs)).backward()

    try:
        model.eval()
        peak_infer = peak_bytes(infer, device)
        model.train()
        for p in model.parameters():
            p.grad = None
        peak_train = peak_bytes(train_pass, device)
    finally:
        model.train(was_training)
        for p, g in grads_before.items():
            p.grad = g
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved_buffers[name])
    method = {"cuda": "torch.cuda.max_memory_allocated",
              "cpu": "torch.profiler CPU allocator events"}.get(device.type, "unavailable")
    return MemoryStats(batch_size=batch_size, param_bytes=params, buffer_bytes=buffers,
                       activation_bytes=activations, peak_inference_bytes=peak_infer,
                       peak_train_bytes=peak_train, peak_method=method)
