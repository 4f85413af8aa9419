"""Memory figures against hand-computed small cases: which tensors autograd saves, and the CPU
allocator's high-water mark for a known sequence of allocations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.profiling import activation_bytes, measure_memory, peak_bytes
from archlab.profiling.memory import parameter_bytes

CPU = torch.device("cpu")


def _mlp(inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 3))


@pytest.mark.parametrize("input_requires_grad", [False, True])
def test_activation_bytes_of_linear_relu_linear(input_requires_grad):
    # Autograd saves: for Linear1 its input x (needed for dL/dW1); for ReLU its output h
    # (the mask); for Linear2 its input, which is the same h, and W2^T, a view of a parameter.
    # When x requires grad Linear1 also saves W1^T (a parameter view). Parameters are not
    # activations and h is one storage: x (5*4 floats) + h (5*8 floats).
    x = torch.randn(5, 4, requires_grad=input_requires_grad)
    assert activation_bytes(_mlp(), (x,)) == (5 * 4 + 5 * 8) * 4


def test_activation_bytes_in_double_and_with_batchnorm_buffers_restored():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 6), nn.BatchNorm1d(6), nn.Tanh()).double().eval()
    before = [b.clone() for b in model.buffers()]
    x = torch.randn(10, 3, dtype=torch.float64)
    got = activation_bytes(model, (x,))
    # Linear saves x (10x3); BatchNorm (training) saves its input y (10x6) and its per-channel
    # mean and inverse std (6 each); Tanh saves its output (10x6). float64: 8 bytes.
    assert got == (10 * 3 + 10 * 6 + 6 + 6 + 10 * 6) * 8
    assert all(torch.equal(a, b) for a, b in zip(before, model.buffers()))
    assert not model.training


class _ViewsOfOneTensor(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 6)

    def forward(self, x):
        y = torch.tanh(self.lin(x))  # Linear saves x, tanh saves y
        return y.view(-1) * y.flatten()  # mul saves two view objects of y's one storage


def test_views_of_one_storage_count_once():
    x = torch.randn(3, 4)
    assert activation_bytes(_ViewsOfOneTensor(), (x,)) == (3 * 4 + 3 * 6) * 4


def test_activation_bytes_refuses_meta_models():
    with torch.device("meta"):
        model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="meta"):
        activation_bytes(model, (torch.zeros(1, 2, device="meta"),))


def test_parameter_bytes_counts_unique_tensors():
    shared = nn.Linear(5, 5)
    model = nn.Sequential(shared, nn.BatchNorm1d(5), shared).double()
    params, buffers = parameter_bytes(model)
    assert params == (25 + 5 + 5 + 5) * 8  # shared Linear once, BN weight and bias
    assert buffers == (5 + 5) * 8 + 8  # running mean/var float64 + num_batches_tracked int64


def test_cpu_peak_of_known_allocations():
    def fn():
        a = torch.empty(1000, dtype=torch.float32)  # 4000 B
        b = torch.empty(500, dtype=torch.float32)  # 2000 B, both alive: 6000
        del a
        c = torch.empty(250, dtype=torch.float64)  # 2000 B: 4000 alive
        return b, c

    assert peak_bytes(fn, CPU) == 6000


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_of_known_allocations_above_what_was_there():
    device = torch.device("cuda")
    resident = torch.empty(2**20, device=device)  # 4 MiB allocated before: not counted
    mib = 2**18  # float32 elements in 1 MiB (a multiple of the allocator's 512-byte blocks)

    def fn():
        a = torch.empty(mib, device=device)
        b = torch.empty(2 * mib, device=device)  # 3 MiB alive
        del a
        c = torch.empty(mib, device=device)  # 3 MiB again, never more
        return b, c

    assert peak_bytes(fn, device) == 3 * 2**20
    model = _mlp(False).to(device)
    stats = measure_memory(model, (4,), batch_size=5)
    # cuBLAS may allocate its workspace inside the first pass, so only the method and a
    # positive figure are certain here; the exact accounting is checked above.
    assert stats.peak_method == "torch.cuda.max_memory_allocated"
    assert stats.peak_inference_bytes > 0 and stats.peak_train_bytes > 0
    assert resident.numel() == 2**20


@pytest.mark.parametrize("inplace, expected", [
    (False, 2 * 5 * 8 * 4),  # Linear1's output and ReLU's output alive together
    (True, 5 * 8 * 4 + 5 * 3 * 4),  # one hidden buffer, then it and the 5x3 output
])
def test_cpu_inference_peak_of_linear_relu_linear(inplace, expected):
    model = _mlp(inplace).eval()
    x = torch.randn(5, 4)

    def infer():
        with torch.inference_mode():
            model(x)

    assert peak_bytes(infer, CPU) == expected


def test_measure_memory_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(),
                          nn.Linear(6, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    stats = measure_memory(model, (3, 4), batch_size=7)
    assert stats.param_bytes == sum(p.numel() for p in model.parameters()) * 4
    # Flatten's output is a view of the input x (7x12), saved by Linear1; BN saves its input
    # (7x6) and mean/invstd (6 each); ReLU saves its output (7x6), which Linear2 saves too.
    assert stats.activation_bytes == (7 * 12 + 7 * 6 + 6 + 6 + 7 * 6) * 4
    # the training pass holds at least the gradients of every parameter at its end
    assert stats.peak_train_bytes >= stats.param_bytes
    # inference: Linear1's and BatchNorm's 7x6 outputs are alive together at least
    assert 2 * 7 * 6 * 4 <= stats.peak_inference_bytes < stats.peak_train_bytes
    assert stats.peak_method.startswith("torch.profiler")
    assert model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
