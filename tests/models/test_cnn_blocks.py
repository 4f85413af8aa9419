"""The CNN's block kinds: parameter and FLOP counts equal the closed forms of each design, the stem
stays a full conv, and the standard kind keeps the checkpoints' layer names."""

import pytest
import torch
from torch import nn

from archlab.models import create_model
from archlab.models._factory import count_flops
from archlab.models.cnn_blocks import BLOCK_KINDS, conv_block


def conv_params(kind: str, cin: int, cout: int, r: int = 4) -> int:
    """Weights of the block's convs + 2 per norm channel (BN affine), written from the papers'
    layouts, independent of the code."""
    mid = cout // r
    if kind == "standard":
        return 9 * cin * cout + 2 * cout
    if kind == "separable":
        return 9 * cin + 2 * cin + cin * cout + 2 * cout
    if kind == "bottleneck":
        return cin * mid + 2 * mid + 9 * mid * mid + 2 * mid + mid * cout + 2 * cout
    return cin * mid + 2 * mid + 9 * mid * cout + 2 * cout  # reduce


def conv_macs(kind: str, cin: int, cout: int, hw: int, r: int = 4) -> int:
    """Multiply-accumulates of the convs at hw output pixels (pooling comes after the last)."""
    mid = cout // r
    return hw * {"standard": 9 * cin * cout,
                 "separable": 9 * cin + cin * cout,
                 "bottleneck": cin * mid + 9 * mid * mid + mid * cout,
                 "reduce": cin * mid + 9 * mid * cout}[kind]


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_block_params_and_flops_match_the_design(kind):
    block = conv_block(kind, 32, 64, act="relu", norm="batch", pool=False)
    assert sum(p.numel() for p in block.parameters()) == conv_params(kind, 32, 64)
    assert count_flops(block, (32, 10, 10)) == 2 * conv_macs(kind, 32, 64, 100)
    x = torch.randn(2, 32, 10, 10)
    assert block(x).shape == (2, 64, 10, 10)
    if kind == "separable":
        depthwise = block[0]
        assert depthwise.groups == 32 and depthwise.weight.shape == (32, 1, 3, 3)


@pytest.mark.parametrize("kind", BLOCK_KINDS)
def test_cnn_fast_with_each_block_kind(kind):
    model = create_model("cnn_fast", num_classes=10, in_chans=1, block=kind)
    # cnn_fast: widths (32, 64, 128), convs (1, 2, 2); stem 1->32 is standard in every kind.
    blocks = [(32, 64), (64, 64), (64, 128), (128, 128)]
    expected = (conv_params("standard", 1, 32) + sum(conv_params(kind, a, b) for a, b in blocks)
                + 128 * 10 + 10)
    assert sum(p.numel() for p in model.parameters()) == expected
    stem = model.stages[0][0][0]
    assert isinstance(stem, nn.Conv2d) and stem.kernel_size == (3, 3) and stem.in_channels == 1
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cheaper_kinds_cut_flops_several_fold_and_standard_keeps_layer_names():
    flops = {k: count_flops(create_model("cnn_fast", in_chans=1, block=k), (1, 28, 28))
             for k in BLOCK_KINDS}
    assert flops["standard"] > 5 * flops["separable"]
    assert flops["standard"] > 4 * flops["bottleneck"] > flops["separable"]
    assert flops["standard"] > 2 * flops["reduce"]
    default = create_model("cnn_fast", in_chans=1)
    standard = create_model("cnn_fast", in_chans=1, block="standard")
    assert list(default.state_dict()) == list(standard.state_dict())
    assert "stages.1.0.0.weight" in default.state_dict()  # conv, pool, norm, act as before


def test_bad_block_options_are_named():
    with pytest.raises(ValueError, match="unknown conv block kind 'seperable'.*separable"):
        create_model("cnn_fast", block="seperable")
    with pytest.raises(ValueError, match="reduction must be >= 1"):
        create_model("cnn_fast", block="reduce", reduction=0)
