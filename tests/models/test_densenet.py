"""DenseNet specifics: dense connectivity, transitions, the CIFAR DenseNet-BC, small stem."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.dense_block import DenseBlock, DenseLayer, Transition
from archlab.models import create_model


def _bn_eval(x, bn):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)


def _randomize_bn(module):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def test_dense_layer_is_preactivation_bottleneck():
    torch.manual_seed(0)
    layer = DenseLayer(in_chans=6, growth_rate=4, bn_size=3).eval()
    _randomize_bn(layer)
    x = torch.randn(2, 6, 5, 5)
    # BN-ReLU-Conv1x1(bn_size*k) - BN-ReLU-Conv3x3(k), written with torch's functional ops.
    h = F.conv2d(F.relu(_bn_eval(x, layer.norm1)), layer.conv1.weight)
    expected = F.conv2d(F.relu(_bn_eval(h, layer.norm2)), layer.conv2.weight, padding=1)
    assert layer.conv1.weight.shape == (12, 6, 1, 1)
    torch.testing.assert_close(layer(x), expected)


def test_dense_block_channel_growth_and_concatenation_order():
    torch.manual_seed(0)
    in_chans, k, num_layers = 5, 4, 3
    block = DenseBlock(num_layers, in_chans, growth_rate=k, bn_size=2).eval()
    _randomize_bn(block)
    x = torch.randn(2, in_chans, 6, 6)
    out = block(x)
    assert out.shape == (2, in_chans + num_layers * k, 6, 6) and block.out_chans == out.shape[1]
    # [x, y1, y2, y3] with y_l = H_l([x, y1, ..., y_{l-1}]) (Eq. 2 of the paper).
    torch.testing.assert_close(out[:, :in_chans], x, rtol=0, atol=0)
    feats = [x]
    for i, layer in enumerate(block.values()):
        assert layer.norm1.num_features == in_chans + i * k
        feats.append(layer(torch.cat(feats, 1)))
        torch.testing.assert_close(out[:, in_chans + i * k: in_chans + (i + 1) * k], feats[-1])


def test_non_bottleneck_layer_has_single_3x3_conv():
    layer = DenseLayer(in_chans=8, growth_rate=12, bn_size=0)
    assert layer.conv1.weight.shape == (12, 8, 3, 3) and not hasattr(layer, "conv2")


def test_transition_compresses_and_halves_resolution():
    torch.manual_seed(0)
    trans = Transition(10, 5).eval()
    _randomize_bn(trans)
    x = torch.randn(2, 10, 8, 8)
    expected = F.avg_pool2d(F.conv2d(F.relu(_bn_eval(x, trans.norm)), trans.conv.weight), 2)
    torch.testing.assert_close(trans(x), expected)
    assert expected.shape == (2, 5, 4, 4)


@pytest.mark.parametrize("compression", [0.5, 0.7])
def test_model_transitions_keep_floor_theta_channels(compression):
    with torch.device("meta"):
        model = create_model("densenet_bc_40_k12", compression=compression)
    channels = 24  # stem: 2k
    for i in range(3):
        channels += 6 * 12
        block = getattr(model.features, f"denseblock{i + 1}")
        assert block.out_chans == channels
        if i < 2:
            channels = math.floor(compression * channels)
            assert getattr(model.features, f"transition{i + 1}").conv.out_channels == channels
    assert model.num_features == channels


def _densenet_bc_param_count(depth, k, num_classes, in_chans=3):
    """Parameters of the paper's CIFAR DenseNet-BC, counted from its description."""
    n = (depth - 4) // 6
    params, c = in_chans * 2 * k * 9, 2 * k  # 3x3 stem conv, no bias
    for block in range(3):
        for _ in range(n):
            params += 2 * c + c * 4 * k + 2 * 4 * k + 4 * k * k * 9  # BN, 1x1, BN, 3x3
            c += k
        if block < 2:
            params += 2 * c + c * (c // 2)  # BN + 1x1 conv
            c //= 2
    return params + 2 * c + c * num_classes + num_classes  # final BN + fc


def test_densenet_bc_100_k12_matches_paper_size():
    model = create_model("densenet_bc_100_k12", num_classes=10)
    params = sum(p.numel() for p in model.parameters())
    assert params == _densenet_bc_param_count(100, 12, 10)
    assert abs(params - 0.8e6) / 0.8e6 < 0.05  # Table 2 of the paper: 0.8M
    assert model.default_cfg.input_size == (3, 32, 32)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_densenet201_and_161_structure():
    # torchvision's published sizes (weights metadata): 20,013,928 and 28,681,000 parameters.
    for name, params, blocks, k, stem in [("densenet201", 20_013_928, (6, 12, 48, 32), 32, 64),
                                          ("densenet161", 28_681_000, (6, 12, 36, 24), 48, 96)]:
        with torch.device("meta"):
            model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == params
        assert model.features.conv0.weight.shape == (stem, 3, 7, 7)
        for i, n in enumerate(blocks):
            layers = list(getattr(model.features, f"denseblock{i + 1}").keys())
            assert layers == [f"denselayer{j + 1}" for j in range(n)]
        assert model.features.denseblock1.denselayer1.conv2.weight.shape == (k, 4 * k, 3, 3)


def test_small_stem_single_channel():
    torch.manual_seed(0)
    model = create_model("densenet_bc_40_k12", num_classes=7, in_chans=1)
    conv0 = model.features.conv0
    assert conv0.kernel_size == (3, 3) and conv0.stride == (1, 1) and conv0.out_channels == 24
    x = torch.randn(2, 1, 28, 28)
    assert model.forward_features(x).shape == (2, model.num_features, 7, 7)
    assert model(x).shape == (2, 7)
    with torch.device("meta"):
        big = create_model("densenet121", num_classes=7, in_chans=1, stem="small")
        feats = big.forward_intermediates(torch.zeros(2, 1, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]
    assert big.default_cfg.input_size == (1, 32, 32)


def test_drop_rate_drops_new_features_only_in_training():
    torch.manual_seed(0)
    layer = DenseLayer(in_chans=6, growth_rate=32, bn_size=2, drop_rate=0.5)
    x = torch.randn(2, 6, 8, 8)
    layer.eval()
    clean = layer(x)
    layer.train()
    layer.norm1.eval(), layer.norm2.eval()  # keep BN deterministic; only dropout differs
    dropped = layer(x)
    kept = dropped != 0
    assert 0.35 < kept.float().mean() < 0.65
    torch.testing.assert_close(dropped[kept], 2 * clean[kept])  # inverted dropout, p = 0.5


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="stem"):
        create_model("densenet121", stem="cifar")
    with pytest.raises(ValueError, match="compression"):
        create_model("densenet_bc_40_k12", compression=0.0)
