"""MobileNet v1/v2/v3: residual rule, SE gate, depthwise convs, width multiplier, paper and
torchvision numbers."""

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.depthwise_separable import DepthwiseSeparableConv
from archlab.layers.inverted_residual import InvertedResidual, MBConv, make_divisible
from archlab.layers.squeeze_excite import SqueezeExcite
from archlab.models import count_flops, create_model

MANIFEST = Path("/work/shared/reference/torchvision_manifest.json")


def _zero_branch_output(block: nn.Module) -> None:
    last_bn = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    nn.init.zeros_(last_bn.weight)
    nn.init.zeros_(last_bn.bias)


@pytest.mark.parametrize("make", [
    lambda i, o, s: InvertedResidual(i, o, s, expand_ratio=6),
    lambda i, o, s: MBConv(i, o, 3, s, expanded_channels=4 * i, squeeze_channels=8),
])
@pytest.mark.parametrize("in_ch,out_ch,stride", [(8, 8, 1), (8, 16, 1), (8, 8, 2)])
def test_inverted_residual_shortcut_exactly_when_shape_is_kept(make, in_ch, out_ch, stride):
    block = make(in_ch, out_ch, stride).eval()
    _zero_branch_output(block)  # the branch now outputs 0: only the shortcut can carry x
    x = torch.randn(2, in_ch, 8, 8)
    out = block(x)
    assert out.shape == (2, out_ch, 8 // stride, 8 // stride)
    if stride == 1 and in_ch == out_ch:
        assert block.use_res_connect and torch.equal(out, x)
    else:
        assert not block.use_res_connect and torch.count_nonzero(out) == 0


def test_v2_projection_is_linear_bottleneck():
    block = InvertedResidual(8, 16, 1, expand_ratio=6)
    assert isinstance(block.conv[-1], nn.BatchNorm2d)  # conv -> BN, no activation after it
    assert isinstance(block.conv[-2], nn.Conv2d) and block.conv[-2].kernel_size == (1, 1)


def test_mobilenet_v3_se_gate_is_hard_sigmoid():
    model = create_model("mobilenet_v3_small").eval()
    ses = [m for m in model.modules() if isinstance(m, SqueezeExcite)]
    assert len(ses) == 9  # Table 2: SE in blocks 1, 4-11
    se = ses[1]
    x = torch.randn(2, se.fc1.in_channels, 5, 5)
    z = se.fc2(F.relu(se.fc1(x.mean((2, 3), keepdim=True))))
    ref = x * torch.clamp(z / 6 + 0.5, 0, 1)  # hard-sigmoid: ReLU6(z + 3) / 6
    assert torch.allclose(se(x), ref, atol=1e-6)
    for block in (m for m in model.modules() if isinstance(m, MBConv)):
        for se in (m for m in block.block if isinstance(m, SqueezeExcite)):
            expanded = block.block[-1][0].in_channels  # input of the projection conv
            assert isinstance(se.scale_activation, nn.Hardsigmoid)
            assert se.fc1.out_channels == make_divisible(expanded // 4, 8)  # not in_channels // 4


def test_depthwise_convs_have_one_group_per_channel_and_match_per_channel_convs():
    model = create_model("mobilenet_v1", width_mult=0.25)
    blocks = [m for m in model.modules() if isinstance(m, DepthwiseSeparableConv)]
    assert len(blocks) == 13
    for b in blocks:
        dw = b.dw[0]
        assert dw.groups == dw.in_channels == dw.out_channels and dw.weight.shape[1] == 1
    dw = blocks[1].dw[0]
    x = torch.randn(2, dw.in_channels, 9, 9)
    ref = torch.cat([F.conv2d(x[:, c:c + 1], dw.weight[c:c + 1], stride=dw.stride, padding=1)
                     for c in range(dw.in_channels)], dim=1)
    assert torch.allclose(dw(x), ref, atol=1e-5)
    for m in create_model("mobilenet_v2").modules():
        if isinstance(m, InvertedResidual):
            dw = next(c[0] for c in m.conv if isinstance(c, nn.Sequential) and c[0].groups > 1)
            assert dw.groups == dw.in_channels == dw.out_channels


# Howard et al. 2017, Table 6: width multiplier α -> (million mult-adds, million params).
@pytest.mark.parametrize("alpha,mult_adds_m,params_m", [(1.0, 569, 4.2), (0.75, 325, 2.6),
                                                        (0.5, 149, 1.3), (0.25, 41, 0.5)])
def test_mobilenet_v1_width_multiplier_matches_paper(alpha, mult_adds_m, params_m):
    with torch.device("meta"):
        model = create_model("mobilenet_v1", width_mult=alpha)
        macs = count_flops(model, (3, 224, 224)) / 2
    assert round(macs / 1e6) == mult_adds_m
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == params_m


def test_make_divisible_rule():
    for v in [i / 4 for i in range(4, 4000)]:
        r = make_divisible(v, 8)
        assert r % 8 == 0 and r >= 8 and r >= 0.9 * v
        nearest = max(8, int(v / 8 + 0.5) * 8)
        assert r in (nearest, nearest + 8)
    assert make_divisible(32 * 0.35) == 16  # 8 would lose > 10% of 11.2 channels
    assert make_divisible(96 * 1.4) == 136


def test_mobilenet_v2_width_multiplier_keeps_head_width():
    model = create_model("mobilenet_v2", width_mult=0.5)
    assert model.features[0][0].out_channels == 16
    assert model.features[-1][0].out_channels == 1280  # max(1, α) for the last conv
    assert create_model("mobilenet_v2", width_mult=1.4).num_features == 1792


def test_mobilenet_v3_large_params_match_torchvision_docs():
    with torch.device("meta"):
        model = create_model("mobilenet_v3_large")
    assert sum(p.numel() for p in model.parameters()) == 5_483_032


def test_small_stem_and_bad_options():
    model = create_model("mobilenet_v2", num_classes=10, in_chans=1, stem="small").eval()
    assert model.default_cfg.input_size == (1, 32, 32)
    assert model.forward_features(torch.randn(2, 1, 32, 32)).shape[-2:] == (4, 4)
    with pytest.raises(ValueError, match="imagenet, small"):
        create_model("mobilenet_v3_small", stem="tiny")
    with pytest.raises(TypeError, match="valid options"):
        create_model("mobilenet_v2", width=2)


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_torchvision_manifest_parity(name):
    if not MANIFEST.exists():
        pytest.skip(f"reference manifest not found at {MANIFEST}")
    ref = json.loads(MANIFEST.read_text())["models"][name]
    with torch.device("meta"):
        model = create_model(name)
        flops = count_flops(model, (3, ref["canonical_resolution"], ref["canonical_resolution"]))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == [[k, shape] for k, shape, *_ in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params_total"]
    assert flops == ref["flops"]
