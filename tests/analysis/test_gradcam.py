"""Grad-CAM / Grad-CAM++ against captum's LayerGradCam and against closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archlab.analysis.attribution import normalize_maps
from archlab.analysis.gradcam import (channel_weights, feature_gradients, grad_cam,
                                      grad_cam_plus_plus, last_spatial_layer, target_layer_name)
from archlab.models import create_model


class ConvGap(nn.Module):
    """1 conv + ReLU + global average pool + linear: y_c = Σ_k W_ck mean(A_k) + b_c, so
    ∂y_c/∂A_kij = W_ck / (h·w) everywhere and Grad-CAM's weights are W_c / (h·w) exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 5, 3, padding=1)
        self.fc = nn.Linear(5, 3)

    def forward_features(self, x):
        return torch.relu(self.conv(x))

    def forward_head(self, x, pre_logits=False):
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def _upsampled(cam: torch.Tensor, size) -> torch.Tensor:
    return normalize_maps(F.interpolate(cam[:, None], size=size, mode="bilinear",
                                        align_corners=False)[:, 0])


def test_gradcam_weights_and_map_match_closed_form():
    torch.manual_seed(0)
    model, x = ConvGap(), torch.randn(3, 2, 6, 6)
    target = torch.tensor([0, 2, 1])
    acts, grads, used = feature_gradients(model, x, target)
    w = model.fc.weight.detach()
    assert torch.equal(used, target)
    torch.testing.assert_close(acts, torch.relu(model.conv(x)).detach())
    torch.testing.assert_close(channel_weights(acts, grads), w[target] / 36)
    cam = torch.relu((w[target][:, :, None, None] / 36 * acts).sum(1))
    torch.testing.assert_close(grad_cam(model, x, target), _upsampled(cam, (6, 6)))


def test_gradcam_plus_plus_matches_closed_form():
    # constant gradient g = W_ck / Z: a_kij = 1 / (2 + W_ck mean(A_k)), w_k = ReLU(W_ck) a_k
    torch.manual_seed(1)
    model, x = ConvGap(), torch.randn(2, 2, 5, 5)
    target = torch.tensor([1, 0])
    acts, grads, _ = feature_gradients(model, x, target)
    w = model.fc.weight.detach()[target]  # (B, K)
    expected = torch.relu(w) / (2 + w * acts.mean((2, 3)))
    torch.testing.assert_close(channel_weights(acts, grads, "gradcam++"), expected)
    cam = torch.relu((expected[:, :, None, None] * acts).sum(1))
    torch.testing.assert_close(grad_cam_plus_plus(model, x, target), _upsampled(cam, (5, 5)))


@pytest.mark.parametrize("layer", [None, "stages.1"])
def test_gradcam_equals_captum_layer_gradcam(layer):
    captum = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=4, in_chans=3, img_size=32)
    with torch.no_grad():  # non-trivial BN statistics so eval mode matters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    model.train()
    x = torch.randn(3, 3, 32, 32)
    ours = grad_cam(model, x, layer=layer)
    assert model.training  # mode restored
    model.eval()
    module = model.stages if layer is None else model.get_submodule(layer)
    target = model(x).argmax(1)
    ref = captum.LayerGradCam(model, module).attribute(x, target=target, relu_attributions=True)
    expected = _upsampled(ref[:, 0].detach(), (32, 32))
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert ours.shape == (3, 32, 32) and ours.min() >= 0 and ours.max() <= 1


def _tiny_vit():
    torch.manual_seed(0)
    return create_model("vit_tiny_patch4", num_classes=5, in_chans=1, img_size=8, patch_size=2,
                        embed_dim=16, depth=2, num_heads=2).eval()


def test_vit_tokens_reshaped_to_patch_grid():
    model, x = _tiny_vit(), torch.randn(2, 1, 8, 8)
    # a block's output tokens, reshaped by Grad-CAM, equal the model's own per-block maps
    acts, grads, _ = feature_gradients(model, x, layer="encoder.layers.encoder_layer_0")
    torch.testing.assert_close(acts, model.forward_intermediates(x)[0])
    assert grads.shape == acts.shape == (2, 16, 4, 4)


def test_vit_default_layer_is_last_attention_input():
    model, x = _tiny_vit(), torch.randn(3, 1, 8, 8)
    last_ln = "encoder.layers.encoder_layer_1.ln_1"  # its output is the last attention's input
    torch.testing.assert_close(grad_cam(model, x), grad_cam(model, x, layer=last_ln))
    assert target_layer_name(model, x) == \
        "input of encoder.layers.encoder_layer_1.self_attention"
    # the final tokens feed the head only through the class token: patch gradients are zero
    _, grads, _ = feature_gradients(model, x, layer="encoder.ln")
    assert grads.abs().max() == 0
    maps = grad_cam_plus_plus(model, x)
    assert maps.shape == (3, 8, 8) and maps.min() >= 0 and maps.max() <= 1


def test_one_pixel_feature_map_falls_back_to_last_spatial_layer():
    torch.manual_seed(0)
    model = create_model("cnn_tiny", num_classes=10, in_chans=1, img_size=8).eval()
    x = torch.randn(2, 1, 8, 8)
    assert model.forward_features(x).shape[-2:] == (1, 1)
    name = last_spatial_layer(model, x)
    assert model.get_submodule(name) is model.stages[2][0][0]  # the 2x2 conv before the pool
    assert target_layer_name(model, x) == name
    torch.testing.assert_close(grad_cam(model, x), grad_cam(model, x, layer=name))
    assert (grad_cam(model, x).amax((1, 2)) == 1).all()


def test_bad_arguments_name_the_problem():
    model, x = ConvGap(), torch.randn(2, 2, 4, 4)
    with pytest.raises(ValueError, match="no module 'convv'"):
        grad_cam(model, x, layer="convv")
    with pytest.raises(ValueError, match=r"target classes must be in \[0, 3\)"):
        grad_cam(model, x, target=7)
    with pytest.raises(ValueError, match="float image batch"):
        grad_cam(model, torch.randn(2, 16))
    with pytest.raises(ValueError, match="not a feature map"):
        grad_cam(model, x, layer="fc")
