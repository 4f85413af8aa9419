"""The ResNet paper's CIFAR nets (He et al. 2016, Sec. 4.2) and their plain twins."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.models import create_model
from archlab.models.resnet_cifar import CifarBlock, ResNetCifar, ShortcutA

# Paper Table 6: parameters in millions, at the precision the paper prints them.
PAPER_PARAMS_M = {"resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85,
                  "resnet110": 1.7}
DEPTHS = {"20": 20, "32": 32, "44": 44, "56": 56, "110": 110}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _zero_pad_subsample(x: torch.Tensor, out_ch: int) -> torch.Tensor:
    sub = x[:, :, ::2, ::2]
    zeros = torch.zeros(x.shape[0], out_ch - x.shape[1], *sub.shape[2:])
    return torch.cat([sub, zeros], dim=1)


def test_option_a_is_parameter_free_zero_padded_strided_identity():
    short = ShortcutA(16, 32, stride=2)
    assert len(list(short.parameters())) == 0 and len(short.state_dict()) == 0
    x = torch.randn(2, 16, 9, 8)  # odd size: stride-2 subsampling keeps ceil(9 / 2) rows
    torch.testing.assert_close(short(x), _zero_pad_subsample(x, 32))


@pytest.mark.parametrize("name,paper_m", sorted(PAPER_PARAMS_M.items()))
def test_param_counts_match_paper(name, paper_m):
    digits = 1 if paper_m >= 1 else 2
    assert round(_params(create_model(name)) / 1e6, digits) == paper_m


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_plain_twin_has_identical_params_and_6n_plus_2_layers(depth):
    res, plain = create_model(f"resnet{depth}"), create_model(f"plain{depth}")
    assert _params(res) == _params(plain)
    assert [k for k in res.state_dict()] == [k for k in plain.state_dict()]
    weighted = [m for m in res.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == DEPTHS[depth]


def test_plain_block_has_no_shortcut():
    torch.manual_seed(0)
    blk = create_model("plain20").layer1[0].eval()
    x = torch.randn(2, 16, 8, 8)
    expected = F.relu(blk.bn2(blk.conv2(F.relu(blk.bn1(blk.conv1(x))))))
    torch.testing.assert_close(blk(x), expected)


def test_option_b_projects_with_conv_and_bn():
    model = create_model("resnet20", shortcut="B")
    proj = model.layer2[0].downsample
    assert isinstance(proj[0], nn.Conv2d) and proj[0].kernel_size == (1, 1)
    assert proj[0].stride == (2, 2) and isinstance(proj[1], nn.BatchNorm2d)
    # Two projections: 16->32 and 32->64 1x1 convs, each with a BN (weight + bias).
    extra = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert _params(model) == _params(create_model("resnet20")) + extra


def test_zero_init_last_makes_each_block_relu_of_shortcut():
    torch.manual_seed(0)
    model = create_model("resnet20", zero_init_last=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.act(model.bn1(model.conv1(x)))
        expected = _zero_pad_subsample(_zero_pad_subsample(h, 32), 64)  # two option-A steps
        for blk in (m for m in model.modules() if isinstance(m, CifarBlock)):
            inp = torch.randn(2, blk.conv1.in_channels, 8, 8)
            torch.testing.assert_close(blk(inp), F.relu(blk.downsample(inp)))
        # Whole net at init: the stem output, subsampled and zero-padded twice.
        torch.testing.assert_close(model.forward_features(x), expected)


def test_zero_init_last_refuses_plain_nets():
    with pytest.raises(ValueError, match="shortcuts"):
        create_model("plain20", zero_init_last=True)


def test_bad_depth_and_shortcut_are_rejected():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        ResNetCifar(depth=21)
    with pytest.raises(ValueError, match="shortcut"):
        ResNetCifar(depth=20, shortcut="C")


def test_stage_shapes_at_32_and_28_one_channel():
    model = create_model("resnet20")
    assert model.default_cfg.input_size == (3, 32, 32) and model.num_classes == 10
    feats = model.forward_intermediates(torch.randn(2, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    gray = create_model("resnet20", in_chans=1, img_size=28)
    feats = gray.forward_intermediates(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in feats] == [(16, 28, 28), (32, 14, 14), (64, 7, 7)]
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 10)
