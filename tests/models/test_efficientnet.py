"""EfficientNet: compound scaling, scaled tables vs torchvision, stochastic depth, SE width."""

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from torch import nn

from archlab.layers.inverted_residual import MBConv
from archlab.layers.squeeze_excite import SqueezeExcite
from archlab.models import MODELS, count_flops, create_model
from archlab.models.efficientnet import VARIANTS, compound_scale, scale_stages

MANIFEST = Path("/work/shared/reference/torchvision_manifest.json")


def _manifest(name):
    if not MANIFEST.exists():
        pytest.skip(f"reference manifest not found at {MANIFEST}")
    return json.loads(MANIFEST.read_text())["models"][name]


@pytest.mark.parametrize("phi", [0, 1, 2.5, 6])
def test_compound_scale_is_alpha_beta_gamma_to_the_phi(phi):
    d, w, r = compound_scale(phi)
    assert d == pytest.approx(1.2 ** phi) and w == pytest.approx(1.1 ** phi)
    assert r == pytest.approx(1.15 ** phi)


def test_compound_coefficients_double_flops_per_phi():
    d, w, r = compound_scale(1)
    assert abs(d * w ** 2 * r ** 2 - 2) < 0.1  # Eq. 3 constraint α·β²·γ² ≈ 2


def _torchvision_stages(name):
    """(repeats, out_channels) per MBConv stage, read off torchvision's state_dict."""
    blocks, out = defaultdict(set), {}
    for key, shape, *_ in _manifest(name)["state_dict"]:
        m = re.match(r"features\.([1-7])\.(\d+)\.block\.(\d+)\.0\.weight", key)
        if m:
            stage, block = int(m[1]), int(m[2])
            blocks[stage].add(block)
            out[stage] = shape[0]  # the projection conv comes last in each block
    return [(len(blocks[s]), out[s]) for s in range(1, 8)]


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b1", "efficientnet_b7"])
def test_scaled_table_matches_torchvision_repeats_and_channels(name):
    v = VARIANTS[name.split("_")[1]]
    ours = [(s.repeats, s.out_channels) for s in scale_stages(v.width, v.depth)]
    assert ours == _torchvision_stages(name)


def test_b7_table_from_multipliers():
    # b7: depth 3.1 -> ceil(n * 3.1), width 2.0 -> channels doubled (already multiples of 8)
    stages = scale_stages(2.0, 3.1)
    assert [s.repeats for s in stages] == [math.ceil(n * 3.1) for n in (1, 2, 2, 3, 3, 4, 1)]
    assert [s.out_channels for s in stages] == [32, 48, 80, 160, 224, 384, 640]


def test_stochastic_depth_rises_linearly_to_the_rate():
    model = create_model("efficientnet_b0", drop_path_rate=0.2)
    rates = [m.drop_path.p for m in model.modules() if isinstance(m, MBConv)]
    assert len(rates) == 16
    assert rates == pytest.approx([0.2 * i / 16 for i in range(16)])
    assert all(b - a == pytest.approx(0.2 / 16) for a, b in zip(rates, rates[1:]))


def test_se_squeezes_to_a_quarter_of_the_block_input():
    model = create_model("efficientnet_b1")
    for block in (m for m in model.modules() if isinstance(m, MBConv)):
        in_channels = block.block[0][0].in_channels
        se = next(m for m in block.block if isinstance(m, SqueezeExcite))
        assert se.fc1.out_channels == max(1, in_channels // 4)
        assert isinstance(se.activation, nn.SiLU) and isinstance(se.scale_activation, nn.Sigmoid)


def test_dropped_residual_branch_passes_the_input_through():
    block = MBConv(16, 16, 3, 1, expanded_channels=64, squeeze_channels=4, act="silu",
                   drop_path_rate=1.0)
    x = torch.randn(2, 16, 6, 6)
    assert torch.equal(block.train()(x), x)
    assert not torch.allclose(block.eval()(x), x)


def test_batch_norm_settings_follow_torchvision():
    # B0-B4 use PyTorch's BN defaults, B5-B7 (ported TF checkpoints) TF's eps / momentum.
    for name, expected in [("efficientnet_b0", (1e-5, 0.1)), ("efficientnet_b7", (1e-3, 0.01))]:
        with torch.device("meta"):
            model = create_model(name)
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert {(m.eps, m.momentum) for m in bns} == {expected}


def test_variants_resolution_dropout_and_heavy_flags():
    for name in VARIANTS:
        heavy = name in ("b3", "b4", "b5", "b6", "b7")
        assert MODELS.entry(f"efficientnet_{name}").meta["heavy"] == heavy
    with torch.device("meta"):
        model = create_model("efficientnet_b3")
    assert model.default_cfg.input_size == (3, 300, 300)
    assert model.classifier[0].p == 0.3


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b1", "efficientnet_b7"])
def test_torchvision_manifest_parity(name):
    ref = _manifest(name)
    res = ref["canonical_resolution"]
    with torch.device("meta"):
        model = create_model(name)
        flops = count_flops(model, (3, res, res))
        native = ref.get("native_resolution")
        native_flops = native and count_flops(model, (3, native["resolution"],
                                                      native["resolution"]))
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == [[k, shape] for k, shape, *_ in ref["state_dict"]]
    assert sum(p.numel() for p in model.parameters()) == ref["params_total"]
    assert flops == ref["flops"]
    if native:
        assert native_flops == native["flops"]
        assert model.default_cfg.input_size == (3, native["resolution"], native["resolution"])
