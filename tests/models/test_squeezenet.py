"""SqueezeNet specifics: Fire modules, the 1x1-conv classifier, both versions' layouts."""

import torch
import torch.nn.functional as F
from torch import nn

from archlab.models import create_model
from archlab.models.squeezenet import Fire


def test_fire_module_squeezes_then_concatenates_expands():
    torch.manual_seed(0)
    fire = Fire(12, squeeze=3, expand1x1=5, expand3x3=7)
    x = torch.randn(2, 12, 6, 6)
    out = fire(x)
    assert out.shape == (2, 5 + 7, 6, 6) and fire.out_chans == 12
    s = F.relu(F.conv2d(x, fire.squeeze.weight, fire.squeeze.bias))
    e1 = F.relu(F.conv2d(s, fire.expand1x1.weight, fire.expand1x1.bias))
    e3 = F.relu(F.conv2d(s, fire.expand3x3.weight, fire.expand3x3.bias, padding=1))
    torch.testing.assert_close(out, torch.cat([e1, e3], 1))


def test_squeezenet1_0_parameter_count_matches_paper():
    with torch.device("meta"):
        model = create_model("squeezenet1_0")
    assert sum(p.numel() for p in model.parameters()) == 1_248_424  # Table 1 of the paper


def test_squeezenet1_1_layout():
    with torch.device("meta"):
        model = create_model("squeezenet1_1")
    # torchvision's published size for squeezenet1_1 (weights metadata): 1,235,496 parameters.
    assert sum(p.numel() for p in model.parameters()) == 1_235_496
    assert model.features[0].weight.shape == (64, 3, 3, 3)
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    fires = [i for i, m in enumerate(model.features) if isinstance(m, Fire)]
    assert pools == [2, 5, 8] and fires == [3, 4, 6, 7, 9, 10, 11, 12]
    assert [model.features[i].out_chans for i in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    feats = model.forward_intermediates(torch.zeros(1, 3, 224, 224, device="meta"))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 111, 111), (128, 55, 55), (256, 27, 27),
                                                   (512, 13, 13)]


def test_classifier_is_a_final_1x1_conv():
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=10, in_chans=1, stem="small").eval()
    conv = model.get_classifier()
    assert model.default_cfg.classifier == "classifier.1"
    assert isinstance(conv, nn.Conv2d) and conv.weight.shape == (10, 512, 1, 1)
    x = torch.randn(2, 1, 28, 28)
    feats = model.forward_features(x)
    # Logits = global average of ReLU(1x1 conv) over the final feature map (no dense layer).
    expected = F.relu(F.conv2d(feats, conv.weight, conv.bias)).mean((2, 3))
    torch.testing.assert_close(model(x), expected)

    model.reset_classifier(3)
    assert model.get_classifier().weight.shape == (3, 512, 1, 1) and model(x).shape == (2, 3)
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), model.forward_head(feats, pre_logits=True))
    assert model(x).shape == (2, model.num_features)


def test_small_stem_keeps_indices_and_drops_first_pool():
    for name in ("squeezenet1_0", "squeezenet1_1"):
        model = create_model(name, num_classes=10, in_chans=1, stem="small")
        first = model.features[0]
        assert first.kernel_size == (3, 3) and first.stride == (1, 1)
        assert isinstance(model.features[2], nn.Identity)
        assert model.forward_features(torch.randn(2, 1, 32, 32)).shape[-2:] == (8, 8)
        assert model.default_cfg.input_size == (1, 32, 32)
