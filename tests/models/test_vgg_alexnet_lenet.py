"""VGG, AlexNet and LeNet-5: layer tables, torchvision layout details and paper shapes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.models import create_model
from archlab.models.lenet import LeNet5

# torchvision docs' num_params for the VGG variants the reference manifest does not list.
PUBLISHED_PARAMS = {"vgg13": 133_047_848, "vgg13_bn": 133_053_736, "vgg19": 143_667_240,
                    "vgg19_bn": 143_678_248}
# Paper Table 1: weight layers per configuration (convs + 3 FC).
VGG_DEPTH = {"vgg11": 11, "vgg13": 13, "vgg16": 16, "vgg19": 19}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_vgg_published_param_counts(name):
    with torch.device("meta"):
        assert _params(create_model(name)) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", sorted(VGG_DEPTH))
def test_vgg_weight_layers_and_torchvision_layout(name):
    with torch.device("meta"):
        plain, bn = create_model(name), create_model(f"{name}_bn")
    weighted = [m for m in plain.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == VGG_DEPTH[name]
    assert sum(isinstance(m, nn.MaxPool2d) for m in plain.features) == 5
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1)
               for m in plain.features if isinstance(m, nn.Conv2d))
    # _bn: every conv is followed by BatchNorm then ReLU, conv biases kept (torchvision).
    for i, m in enumerate(bn.features):
        if isinstance(m, nn.Conv2d):
            assert m.bias is not None
            assert isinstance(bn.features[i + 1], nn.BatchNorm2d)
            assert isinstance(bn.features[i + 2], nn.ReLU)
    assert [type(m) for m in plain.classifier] == [nn.Linear, nn.ReLU, nn.Dropout] * 2 + [nn.Linear]
    assert plain.avgpool.output_size == 7 and plain.default_cfg.classifier == "classifier.6"


def test_vgg_small_stem_head_and_sizes():
    model = create_model("vgg11_bn", num_classes=7, in_chans=1, stem="small")
    assert model.default_cfg.classifier == "classifier.0" and model.num_features == 512
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    for size, final in ((32, 2), (28, 1)):
        feats = model.forward_intermediates(torch.randn(2, 1, size, size))
        assert feats[-1].shape == (2, 512, final, final)
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_vgg_small_forward_matches_functional_reference():
    torch.manual_seed(0)
    model = create_model("vgg11", num_classes=3, stem="small").eval()
    x = torch.randn(2, 3, 32, 32)
    ref, convs = x, iter(m for m in model.features if isinstance(m, nn.Conv2d))
    for item in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]:  # config A
        if item == "M":
            ref = F.max_pool2d(ref, 2, 2)
        else:
            conv = next(convs)
            ref = F.relu(F.conv2d(ref, conv.weight, conv.bias, padding=1))
    head = model.classifier[0]
    torch.testing.assert_close(model(x), F.linear(ref.mean((2, 3)), head.weight, head.bias))


def test_alexnet_torchvision_layout_and_forward():
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=5).eval()
    assert [type(m) for m in model.classifier] == [nn.Dropout, nn.Linear, nn.ReLU] * 2 + [nn.Linear]
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]
    x = torch.randn(2, 3, 127, 127)
    # torchvision's AlexNet written out (eval mode: dropout is the identity).
    spec = [(11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False), (3, 1, 1, True)]
    ref = x
    for conv, (k, s, p, pool) in zip(convs, spec):
        assert conv.kernel_size == (k, k)
        ref = F.relu(F.conv2d(ref, conv.weight, conv.bias, stride=s, padding=p))
        if pool:
            ref = F.max_pool2d(ref, 3, 2)
    ref = F.adaptive_avg_pool2d(ref, 6).flatten(1)
    fc1, fc2, fc3 = model.classifier[1], model.classifier[4], model.classifier[6]
    ref = F.linear(F.relu(F.linear(F.relu(F.linear(ref, fc1.weight, fc1.bias)), fc2.weight,
                                   fc2.bias)), fc3.weight, fc3.bias)
    torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-5)


def test_alexnet_small_stem_runs_at_28_and_32():
    model = create_model("alexnet", num_classes=7, in_chans=1, stem="small")
    assert model.default_cfg.input_size == (1, 32, 32)
    for size in (28, 32):
        assert model(torch.randn(2, 1, size, size)).shape == (2, 7)


def test_lenet5_paper_shapes_and_param_count():
    model = create_model("lenet5")
    feats = model.forward_intermediates(torch.randn(2, 1, 28, 28))
    assert [tuple(f.shape[1:]) for f in feats] == [(6, 14, 14), (16, 5, 5), (120, 1, 1)]
    # C1 + C3 (fully connected variant) + C5 + F6 + output, weights and biases.
    expected = (6 * 25 + 6) + (16 * 6 * 25 + 16) + (120 * 16 * 25 + 120) + (120 * 84 + 84) + \
        (84 * 10 + 10)
    assert _params(model) == expected


def test_lenet5_28_is_32_with_two_pixel_zero_border():
    torch.manual_seed(0)
    m28, m32 = LeNet5(img_size=28), LeNet5(img_size=32)
    m32.load_state_dict(m28.state_dict())
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(m28(x), m32(F.pad(x, (2, 2, 2, 2))))


def test_lenet5_forward_is_tanh_avgpool_reference():
    torch.manual_seed(0)
    model = create_model("lenet5", in_chans=3, img_size=32, num_classes=4)
    f = model.features
    x = torch.randn(2, 3, 32, 32)
    h = F.avg_pool2d(torch.tanh(F.conv2d(x, f.c1.weight, f.c1.bias)), 2)
    h = F.avg_pool2d(torch.tanh(F.conv2d(h, f.c3.weight, f.c3.bias)), 2)
    h = torch.tanh(F.conv2d(h, f.c5.weight, f.c5.bias)).flatten(1)
    h = torch.tanh(F.linear(h, model.f6.weight, model.f6.bias))
    torch.testing.assert_close(model(x), F.linear(h, model.fc.weight, model.fc.bias))
    with pytest.raises(ValueError, match="img_size"):
        LeNet5(img_size=64)
