import warnings

import pytest
import torch
from torch import nn

from archlab.train.optim import OptimConfig, build_optimizer, param_groups
from archlab.train.precision import cpu_has_native_bf16, resolve_precision


def model():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_norm_and_bias_are_not_decayed_by_default():
    m = model()
    decay, no_decay = param_groups(m, 0.1)
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[3].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(m[0].bias), id(m[1].weight), id(m[1].bias),
                                                   id(m[3].bias)}
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.1


def test_decay_everything_when_asked():
    opt = build_optimizer(model(), OptimConfig(name="adamw", weight_decay=0.1,
                                               decay_norm_and_bias=True))
    assert isinstance(opt, torch.optim.AdamW)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1]


def test_sgd_step_equals_torch_with_groups():
    torch.manual_seed(0)
    m1 = model()
    m2 = model()
    m2.load_state_dict(m1.state_dict())
    ours = build_optimizer(m1, OptimConfig(name="sgd", lr=0.1, weight_decay=0.01, momentum=0.9,
                                           nesterov=True))
    ref = torch.optim.SGD([{"params": [m2[0].weight, m2[3].weight], "weight_decay": 0.01},
                           {"params": [m2[0].bias, m2[1].weight, m2[1].bias, m2[3].bias],
                            "weight_decay": 0.0}], lr=0.1, momentum=0.9, nesterov=True)
    x = torch.randn(4, 1, 3, 3)
    for opt, m in ((ours, m1), (ref, m2)):
        for _ in range(3):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)


NO_BF16 = {"avx2", "fma", "avx512f"}
WITH_BF16 = NO_BF16 | {"avx512_bf16"}


def test_bf16_on_cpu_without_native_support_warns_and_stays_fp32():
    with pytest.warns(UserWarning, match="no native bf16"):
        p = resolve_precision("bf16", torch.device("cpu"), cpu_flag_set=NO_BF16)
    assert p.dtype is None and not p.use_grad_scaler


def test_bf16_on_cpu_with_native_support():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = resolve_precision("bf16", torch.device("cpu"), cpu_flag_set=WITH_BF16)
    assert p.dtype is torch.bfloat16
    assert cpu_has_native_bf16({"amx_bf16"}) and not cpu_has_native_bf16(NO_BF16)


def test_auto_on_cpu_is_fp32_and_unknown_is_rejected():
    assert resolve_precision("auto", torch.device("cpu")).dtype is None
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_precision():
    p = resolve_precision("auto", torch.device("cuda"))
    assert p.dtype in (torch.bfloat16, torch.float16)
    assert p.use_grad_scaler == (p.dtype is torch.float16)
