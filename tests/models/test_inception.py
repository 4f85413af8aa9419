"""GoogLeNet / Inception-v3 specifics: branch concatenation, factorized convolutions' receptive
fields, auxiliary heads in train vs eval mode, input transform, grid sizes from the papers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.layers.inception import Inception, transform_input
from archlab.models import create_model
from archlab.models.googlenet import GoogLeNet
from archlab.models.inception_v3 import Inception3, InceptionC, InceptionE


def test_inception_module_concatenates_four_branches_in_order():
    torch.manual_seed(0)
    block = Inception(8, 3, 4, 5, 2, 6, 7).eval()
    x = torch.randn(2, 8, 9, 9)
    out = block(x)
    assert out.shape == (2, 3 + 5 + 6 + 7, 9, 9) and block.out_chans == 21
    pooled = F.max_pool2d(x, 3, stride=1, padding=1)
    expected = [block.branch1(x), block.branch2(x), block.branch3(x), block.branch4[1](pooled)]
    torch.testing.assert_close(out, torch.cat(expected, 1))


def test_paper_5x5_branch_option():
    block = Inception(8, 3, 4, 5, 2, 6, 7, branch3_kernel=5)
    assert block.branch3[1].conv.weight.shape == (6, 2, 5, 5)
    assert block(torch.randn(1, 8, 7, 7)).shape == (1, 21, 7, 7)


def _make_linear_positive(module):
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.weight, 0.1, 1.0)


def _support(module, x, channels, center):
    """Bounding box (h, w) of the input pixels that influence output pixel ``center``."""
    x = x.clone().requires_grad_(True)
    module(x)[0, channels, center[0], center[1]].sum().backward()
    rows, cols = (x.grad[0].abs().sum(0) > 0).nonzero(as_tuple=True)
    return (rows.max() - rows.min() + 1).item(), (cols.max() - cols.min() + 1).item()


def _reference_support(kernels, x_size=17):
    """The same box from a stack of plain ``nn.Conv2d`` with the given (kh, kw) kernels."""
    convs = nn.Sequential(*[nn.Conv2d(1, 1, k, padding=(k[0] // 2, k[1] // 2), bias=False)
                            for k in kernels])
    _make_linear_positive(convs)
    return _support(convs, torch.ones(1, 1, x_size, x_size), [0], (x_size // 2, x_size // 2))


def test_factorized_7x7_branches_have_7x7_and_13x13_receptive_fields():
    torch.manual_seed(0)
    # Linear, positive network: the gradient's support is exactly the receptive field.
    block = InceptionC(4, channels_7x7=3, norm="none", act="identity")
    _make_linear_positive(block)
    x, c = torch.ones(1, 4, 17, 17), (8, 8)
    assert _support(block, x, slice(0, 192), c) == (1, 1)
    assert _support(block, x, slice(192, 384), c) == _reference_support([(7, 7)]) == (7, 7)
    assert _support(block, x, slice(384, 576), c) == _reference_support([(7, 7)] * 2) == (13, 13)
    assert block(x).shape == (1, 768, 17, 17)
    # 1x7 + 7x1 needs 2 * 7 weights per channel pair where a 7x7 needs 49.
    assert block.branch7x7_2.conv.weight[0, 0].numel() + \
        block.branch7x7_3.conv.weight[0, 0].numel() == 14


def test_expanded_filter_bank_splits_3x3_into_1x3_and_3x1():
    torch.manual_seed(0)
    block = InceptionE(4, norm="none", act="identity")
    _make_linear_positive(block)
    x, c = torch.ones(1, 4, 9, 9), (4, 4)
    # Channels: 1x1 (320) | 1x3 (384), 3x1 (384) | 3x3->1x3 (384), 3x3->3x1 (384) | pool (192).
    assert _support(block, x, slice(320, 1088), c) == (3, 3)  # the pair together
    assert _support(block, x, slice(320, 704), c) == _reference_support([(1, 3)]) == (1, 3)
    assert _support(block, x, slice(704, 1088), c) == _reference_support([(3, 1)]) == (3, 1)
    assert _support(block, x, slice(1088, 1472), c) == _reference_support([(3, 3), (1, 3)])
    assert _support(block, x, slice(1472, 1856), c) == _reference_support([(3, 3), (3, 1)])
    assert _support(block, x, slice(1856, 2048), c) == (3, 3)  # 3x3 average pool
    assert block(x).shape == (1, 2048, 9, 9)


def test_googlenet_aux_heads_train_vs_eval():
    torch.manual_seed(0)
    model = create_model("googlenet", num_classes=5, in_chans=1, stem="small", drop_rate=0.0)
    assert GoogLeNet.aux_loss_weight == 0.3
    x = torch.randn(2, 1, 32, 32)
    model.train()
    out = model(x)
    assert set(out) == {"logits", "aux_logits"} and len(out["aux_logits"]) == 2
    assert all(a.shape == (2, 5) for a in [out["logits"], *out["aux_logits"]])
    # Computing the aux heads must not disturb the main path (e.g. through in-place ops).
    torch.testing.assert_close(out["logits"], model.forward_head(model.forward_features(x)))
    model.eval()
    assert isinstance(model(x), torch.Tensor) and model(x).shape == (2, 5)

    model.reset_classifier(3)
    assert model.aux1.fc2.out_features == model.aux2.fc2.out_features == 3
    model.reset_classifier(0)  # nothing to supervise: the aux heads go
    assert model.train()(x).shape == (2, 1024) and model.aux1 is None


def test_googlenet_without_aux_heads():
    with torch.device("meta"):
        model = create_model("googlenet", aux_logits=False)
    assert not any(k.startswith("aux") for k in model.state_dict())
    # torchvision's parameter count without the aux heads (manifest: 6,624,904).
    assert sum(p.numel() for p in model.parameters()) == 6_624_904
    out = model.train()(torch.zeros(2, 3, 224, 224, device="meta"))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)


def test_googlenet_grids_match_paper_table1():
    with torch.device("meta"):
        model = create_model("googlenet")
        feats = model.forward_intermediates(torch.zeros(1, 3, 224, 224))
    # Table 1: 56x56x192 before inception (3a); (3b) 28x28x480; (4e) 14x14x832; (5b) 7x7x1024.
    assert [tuple(f.shape[1:]) for f in feats] == [(192, 56, 56), (480, 28, 28),
                                                   (832, 14, 14), (1024, 7, 7)]


def test_inception_v3_aux_head_train_vs_eval_at_299():
    with torch.device("meta"):
        model = create_model("inception_v3")
        x = torch.zeros(2, 3, 299, 299)
        out = model.train()(x)
        assert set(out) == {"logits", "aux_logits"} and len(out["aux_logits"]) == 1
        assert out["aux_logits"][0].shape == out["logits"].shape == (2, 1000)
        assert isinstance(model.eval()(x), torch.Tensor)
        # Table 1 of the paper: 35x35x288, 17x17x768, 8x8x2048 grids.
        feats = model.forward_intermediates(x)
    assert [tuple(f.shape[1:]) for f in feats[1:]] == [(288, 35, 35), (768, 17, 17),
                                                       (2048, 8, 8)]
    assert Inception3.aux_loss_weight == 0.4
    with torch.device("meta"):
        no_aux = create_model("inception_v3", aux_logits=False)
    assert sum(p.numel() for p in no_aux.parameters()) == 23_834_568  # manifest, without aux


def test_inception_v3_small_stem_runs_with_aux_on_cpu():
    torch.manual_seed(0)
    model = create_model("inception_v3", num_classes=4, in_chans=1, stem="small")
    assert model.default_cfg.input_size == (1, 32, 32)
    x = torch.randn(2, 1, 16, 16)  # small but valid: grids 7, 3, 1
    with torch.no_grad():
        out = model.train()(x)
        assert out["logits"].shape == out["aux_logits"][0].shape == (2, 4)
        assert model.eval()(x).shape == (2, 4)
    with pytest.raises(ValueError, match="H, W >= 15"):
        model(torch.randn(1, 1, 12, 12))


def test_inception_v3_rejects_too_small_input():
    with torch.device("meta"):
        model = create_model("inception_v3").eval()
        model(torch.zeros(1, 3, 75, 75))
        with pytest.raises(ValueError, match="H, W >= 75"):
            model(torch.zeros(1, 3, 64, 64))
        with pytest.raises(ValueError, match="aux head"):
            model.train()(torch.zeros(1, 3, 224, 224))


def test_transform_input_matches_rescaling_formula():
    x = torch.randn(2, 3, 4, 4)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    # Undo ImageNet normalization to [0, 1] pixels, then map to [-1, 1].
    torch.testing.assert_close(transform_input(x), (x * std + mean - 0.5) / 0.5)
    with pytest.raises(ValueError, match="in_chans=3"):
        create_model("googlenet", in_chans=1, transform_input=True)
