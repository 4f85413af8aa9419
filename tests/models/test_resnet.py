"""ResNet / Wide / ResNeXt / SE-ResNet specifics and CBAM, against independent references."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.cbam import CBAM
from archlab.layers.squeeze_excite import SqueezeExcite
from archlab.models import create_model
from archlab.models.resnet import BasicBlock, Bottleneck, ResNet

# Published parameter counts (torchvision docs' num_params for the torchvision models; the
# "glasses" model table for SE-ResNets with r = 16) for variants outside the manifest.
PUBLISHED_PARAMS = {
    "wide_resnet101_2": 126_886_696,
    "resnext101_32x8d": 88_791_336,
    "seresnet18": 11_778_592,
    "seresnet50": 28_088_024,
}


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def _bn(x, sd, prefix):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], False, 0.0, 1e-5)


def _torchvision_resnet_forward(sd: dict, x: torch.Tensor, bottleneck: bool, groups: int):
    """torchvision's ResNet forward written with functional ops on a state_dict (eval mode)."""
    x = F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)
    x = F.max_pool2d(F.relu(_bn(x, sd, "bn1")), 3, 2, 1)
    for stage in range(1, 5):
        i = 0
        while f"layer{stage}.{i}.conv1.weight" in sd:
            p = f"layer{stage}.{i}"
            stride = 2 if stage > 1 and i == 0 else 1
            if bottleneck:
                out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
                out = F.relu(_bn(F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1,
                                          groups=groups), sd, f"{p}.bn2"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1),
                                 sd, f"{p}.bn1"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if f"{p}.downsample.0.weight" in sd:
                x = _bn(F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride), sd,
                        f"{p}.downsample.1")
            x = F.relu(out + x)
            i += 1
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("block,groups,width", [("basic", 1, 64), ("bottleneck", 4, 16)])
def test_forward_matches_functional_torchvision_reference(block, groups, width):
    torch.manual_seed(0)
    model = ResNet(block, (1, 2, 1, 1), groups=groups, width_per_group=width, num_classes=5)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    ref = _torchvision_resnet_forward(model.state_dict(), x, block == "bottleneck", groups)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_param_counts(name):
    with torch.device("meta"):
        model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_PARAMS[name]


def test_resnext_grouped_convs():
    with torch.device("meta"):
        model = create_model("resnext50_32x4d")
    for stage in range(4):
        width = 4 * 32 * 2 ** stage  # width_per_group x groups, doubling per stage
        for block in getattr(model, f"layer{stage + 1}"):
            assert block.conv2.groups == 32
            assert tuple(block.conv2.weight.shape) == (width, width // 32, 3, 3)
            assert block.conv3.out_channels == 256 * 2 ** stage
    # Stride 2 sits on the 3x3 conv, not on the first 1x1 ("v1.5").
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)


def _blocks(model):
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("attn", [None, "se", "cbam"])
def test_zero_init_last_makes_every_block_act_of_shortcut(block, attn):
    torch.manual_seed(0)
    model = ResNet(block, (2, 1, 1, 1), num_classes=3, stem="small", attn=attn,
                   zero_init_last=True)
    for training in (True, False):
        model.train(training)
        x = torch.randn(2, 64, 8, 8)
        for blk in _blocks(model):
            with torch.no_grad():
                expected = F.relu(blk.downsample(x))
                out = blk(x)
            torch.testing.assert_close(out, expected)
            if isinstance(blk.downsample, nn.Identity):  # identity block on ReLU inputs
                torch.testing.assert_close(blk(F.relu(x)), F.relu(x))
            x = out


def test_without_zero_init_blocks_are_not_identity():
    torch.manual_seed(0)
    model = ResNet("basic", (1, 1, 1, 1), stem="small")
    x = F.relu(torch.randn(2, 64, 8, 8))
    assert not torch.allclose(model.layer1[0](x), x)


def test_seresnet_places_se_after_last_bn():
    torch.manual_seed(0)
    model = create_model("seresnet18", num_classes=4, stem="small").eval()
    blk = model.layer1[0]
    assert isinstance(blk.attn, SqueezeExcite) and blk.attn.fc1.out_channels == 64 // 16
    x = torch.randn(2, 64, 8, 8)
    branch = blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x)))))
    gate = torch.sigmoid(blk.attn.fc2(F.relu(blk.attn.fc1(branch.mean((2, 3), keepdim=True)))))
    torch.testing.assert_close(blk(x), F.relu(branch * gate + x))
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_cbam_matches_formula():
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=16)
    x = torch.randn(2, 32, 9, 7)
    c = cbam.channel

    def mlp(v):
        return F.conv2d(F.relu(F.conv2d(v, c.fc1.weight, c.fc1.bias)), c.fc2.weight, c.fc2.bias)

    mc = torch.sigmoid(mlp(F.adaptive_avg_pool2d(x, 1)) + mlp(F.adaptive_max_pool2d(x, 1)))
    f1 = mc * x
    pooled = torch.stack([f1.mean(1), f1.max(1).values], dim=1)
    ms = torch.sigmoid(F.conv2d(pooled, cbam.spatial.conv.weight, cbam.spatial.conv.bias,
                                padding=3))
    torch.testing.assert_close(cbam(x), ms * f1)
    assert c.fc1.out_channels == 2 and cbam.spatial.conv.kernel_size == (7, 7)


def test_small_stem_and_intermediates():
    model = create_model("resnet18", num_classes=7, in_chans=1, stem="small")
    assert model.default_cfg.input_size == (1, 32, 32)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    feats = model.forward_intermediates(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 28, 28), (128, 14, 14), (256, 7, 7),
                                                   (512, 4, 4)]


def test_drop_path_rates_rise_linearly():
    model = ResNet("basic", (2, 2, 2, 2), drop_path_rate=0.7, stem="small")
    rates = [b.drop_path.p if hasattr(b.drop_path, "p") else 0.0 for b in _blocks(model)]
    assert rates == pytest.approx([0.7 * i / 7 for i in range(8)])
    model.eval()
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(x), model(x))  # eval: deterministic


def test_variant_rows_cannot_be_overridden_and_options_are_checked():
    with pytest.raises(TypeError, match="fixed by variant"):
        create_model("resnet18", layers=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="attn"):
        create_model("resnet18", attn="eca")
    with pytest.raises(ValueError, match="stem"):
        create_model("resnet18", stem="tiny")
    with pytest.raises(ValueError, match="BasicBlock"):
        ResNet("basic", (1, 1, 1, 1), groups=2)
