"""Per-layer summary: FLOPs against the analytic formulas, totals against the torchvision manifest
and count_flops, per-layer columns summing to the totals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from archlab.models import count_flops, create_model
from archlab.profiling import profile, summarize

MANIFEST_PATH = Path(__file__).resolve().parents[3] / "shared" / "reference" / \
    "torchvision_manifest.json"


def _conv_out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_flops_match_the_analytic_formula(bias):
    cin, cout, groups, (kh, kw), (h, w) = 6, 8, 2, (3, 5), (11, 13)
    conv = nn.Conv2d(cin, cout, (kh, kw), stride=2, padding=1, groups=groups, bias=bias)
    s = summarize(conv, (cin, h, w))
    h_out, w_out = _conv_out(h, kh, 2, 1), _conv_out(w, kw, 2, 1)
    # 2 FLOPs per multiply-accumulate; the bias add is NOT counted by torch's counter, so the
    # figure is the same with and without bias.
    expected = 2 * cout * h_out * w_out * (cin // groups) * kh * kw
    assert s.total_flops == expected and s.total_macs == expected // 2
    (layer,) = s.layers
    assert layer.flops == expected and layer.output_shape == [1, cout, h_out, w_out]
    assert layer.params == cout * (cin // groups) * kh * kw + (cout if bias else 0)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_flops_match_the_analytic_formula(bias):
    fc = nn.Linear(20, 7, bias=bias)
    s = summarize(fc, (20,))
    assert s.total_flops == 2 * 20 * 7  # per sample; bias not counted
    assert s.layers[0].params == 20 * 7 + (7 if bias else 0)
    assert s.layers[0].output_shape == [1, 7]


class _Block(nn.Module):
    """A module doing a matmul itself and calling a child twice (a shared layer)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.scale = nn.Parameter(torch.ones(6), requires_grad=False)

    def forward(self, x):  # (1, 4, 6)
        attn = x @ x.transpose(1, 2)  # (1, 4, 4): 4*4*6 MACs, owned by the block itself
        x = attn @ x  # (1, 4, 6): 4*6*4 MACs
        return self.proj(self.proj(x)) * self.scale


def test_own_flops_exclude_children_and_count_repeated_calls():
    block = _Block()
    s = summarize(block, (4, 6))
    rows = {layer.name: layer for layer in s.layers}
    assert rows[""].flops == 2 * (4 * 4 * 6 + 4 * 6 * 4)
    assert rows["proj"].flops == 2 * 2 * (4 * 6 * 6) and rows["proj"].calls == 2
    assert s.total_flops == rows[""].flops + rows["proj"].flops
    assert rows[""].params == 6 and rows[""].trainable_params == 0
    assert s.trainable_params == s.total_params - 6


def test_shared_parameters_are_counted_once():
    shared = nn.Linear(5, 5)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    s = summarize(model, (5,))
    assert sum(layer.params for layer in s.layers) == s.total_params == 30
    assert s.total_flops == 2 * 2 * 25


@pytest.mark.skipif(not MANIFEST_PATH.exists(), reason="reference manifest not present")
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_totals_match_the_torchvision_manifest(name):
    ref = json.loads(MANIFEST_PATH.read_text())["models"][name]
    res = ref["canonical_resolution"]
    with torch.device("meta"):
        model = create_model(name, num_classes=1000, in_chans=3)
    s = summarize(model, (3, res, res))
    assert s.total_params == ref["params_total"]
    assert s.trainable_params == ref["params_trainable"]
    assert s.total_flops == ref["flops"] == count_flops(model, (3, res, res))
    assert s.total_macs == ref["macs"]
    assert s.flops_by_op == {op.removeprefix("aten."): v for op, v in ref["flops_by_op"].items()}


@pytest.mark.parametrize("name, kwargs, size", [
    ("resnet18", {}, (3, 64, 64)),
    ("mobilenet_v2", {}, (3, 64, 64)),
    ("vit_tiny_patch4", dict(num_classes=5, in_chans=1, img_size=28, embed_dim=32, depth=2,
                             num_heads=4), (1, 28, 28)),
    ("transformer_encoder_tiny", {}, None),
])
def test_per_layer_columns_sum_to_the_totals(name, kwargs, size):
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    size = size or tuple(model.default_cfg.input_size)
    s = summarize(model, size)
    assert sum(layer.params for layer in s.layers) == s.total_params == \
        sum(p.numel() for p in model.parameters())
    assert sum(layer.flops for layer in s.layers) + s.unattributed_flops == s.total_flops
    assert s.total_flops == count_flops(model, size) > 0
    for depth in (0, 1, 2):
        folded = s.fold(depth)
        assert max(layer.depth for layer in folded) <= depth
        assert sum(layer.params for layer in folded) == s.total_params
        assert sum(layer.flops for layer in folded) + s.unattributed_flops == s.total_flops


def test_fold_gives_each_subtree_its_descendants_cost():
    with torch.device("meta"):
        model = create_model("resnet18")
    s = summarize(model, (3, 32, 32))
    layer1 = {layer.name: layer for layer in s.fold(1)}["layer1"]
    # independent reference: the parameters of the layer1 subtree, counted by torch
    assert layer1.params == sum(p.numel() for p in model.layer1.parameters())
    assert layer1.flops == sum(layer.flops for layer in s.layers
                               if layer.name.startswith("layer1."))


def test_output_shapes_are_the_real_ones():
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=10, in_chans=1, img_size=8)
    s = summarize(model, (1, 8, 8))
    shapes = {}

    def record(name):
        def hook(_module, _inputs, output):
            shapes.setdefault(name, list(output.shape))
        return hook

    hooks = [m.register_forward_hook(record(n)) for n, m in model.named_modules()]
    assert model.training  # summarize restored the mode
    model.eval()(torch.zeros(1, 1, 8, 8))
    for h in hooks:
        h.remove()
    assert {layer.name: layer.output_shape for layer in s.layers} == shapes


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="input_size"):
        summarize(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="batch_sizes"):
        profile("cnn_tiny", batch_sizes=[0])
    with pytest.raises(ValueError, match="not_an_option"):
        profile("cnn_tiny", not_an_option=1)
    with pytest.raises(TypeError, match="model name or an nn.Module"):
        profile(42)
