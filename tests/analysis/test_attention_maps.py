"""Attention recording and rollout against the models' own maps and a direct numpy rollout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.analysis.attention_maps import (attention_maps, attention_rollout, patch_grid,
                                             query_to_patches, recording_attention, rollout_maps)
from archlab.analysis.attribution import normalize_maps
from archlab.models import create_model


def numpy_rollout(layers: list[np.ndarray], fusion: str = "mean", residual: bool = True):
    """Abnar & Zuidema 2020, one example at a time, written out with numpy."""
    out = []
    for b in range(layers[0].shape[0]):
        joint = np.eye(layers[0].shape[-1])
        for attn in layers:
            a = {"mean": np.mean, "max": np.max, "min": np.min}[fusion](attn[b], axis=0)
            if residual:
                a = 0.5 * a + 0.5 * np.eye(a.shape[0])  # rows of a sum to 1 already
            a = a / a.sum(axis=1, keepdims=True)
            joint = a @ joint
        out.append(joint)
    return np.stack(out)


def _random_attention(rng, batch=2, heads=3, length=5):
    scores = rng.normal(size=(batch, heads, length, length))
    e = np.exp(scores)
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("fusion, residual", [("mean", True), ("max", True), ("min", False),
                                              ("mean", False)])
def test_rollout_matches_numpy(fusion, residual):
    rng = np.random.default_rng(0)
    layers = [_random_attention(rng) for _ in range(3)]
    ours = attention_rollout([torch.tensor(a) for a in layers], fusion, residual)
    np.testing.assert_allclose(ours.numpy(), numpy_rollout(layers, fusion, residual),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.sum(-1).numpy(), 1.0, rtol=1e-12)  # still row-stochastic


def _tiny_vit():
    torch.manual_seed(0)
    return create_model("vit_tiny_patch4", num_classes=5, in_chans=1, img_size=8, patch_size=2,
                        embed_dim=16, depth=3, num_heads=2)


def test_vit_maps_equal_the_models_own_and_hooks_are_removed():
    model, x = _tiny_vit(), torch.randn(2, 1, 8, 8)
    model.eval()
    before = model(x)
    maps = attention_maps(model, x)
    assert list(maps) == [f"encoder.layers.encoder_layer_{i}.self_attention" for i in range(3)]
    for ours, ref in zip(maps.values(), model.get_attention_maps(x)):
        torch.testing.assert_close(ours, ref)
        assert ours.shape == (2, 2, 17, 17)
    attn = model.encoder.layers[0].self_attention
    assert not attn._forward_hooks and not attn._forward_pre_hooks
    torch.testing.assert_close(model(x), before)  # recording did not change the computation


def test_vit_rollout_maps_follow_the_class_token_row():
    model, x = _tiny_vit(), torch.randn(3, 1, 8, 8)
    model.train()
    heat = rollout_maps(model, x)
    assert model.training and heat.shape == (3, 8, 8)
    model.eval()
    layers = [a.double().numpy() for a in model.get_attention_maps(x)]
    cls_row = numpy_rollout(layers)[:, 0, 1:].reshape(3, 4, 4)  # class token -> 4x4 patches
    # min-max scaling is affine and bilinear upsampling commutes with affine maps, so scaling
    # before or after upsampling gives the same picture
    low, high = cls_row.min((1, 2), keepdims=True), cls_row.max((1, 2), keepdims=True)
    expected = torch.nn.functional.interpolate(
        torch.tensor((cls_row - low) / (high - low))[:, None].float(), size=(8, 8),
        mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(heat, normalize_maps(expected), atol=1e-5, rtol=1e-5)


def test_query_to_patches_layout():
    attn = torch.arange(5 * 5, dtype=torch.float32).view(5, 5)  # 1 class + 2x2 patches
    torch.testing.assert_close(query_to_patches(attn, (2, 2)),
                               torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert patch_grid(_tiny_vit()) == (4, 4)


def test_text_transformer_attention_ignores_padding():
    torch.manual_seed(0)
    model = create_model("transformer_encoder_tiny", num_classes=2, vocab_size=20, max_len=8,
                         d_model=16, num_heads=2, num_layers=2)
    tokens = torch.tensor([[5, 6, 7, 8, 0, 0], [3, 4, 9, 9, 9, 2]])  # pad_id 0 on the right
    maps = attention_maps(model, tokens)
    assert len(maps) == 2
    for a in maps.values():
        assert a.shape == (2, 2, 6, 6)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 2, 6))
        # real-token queries give padding keys no weight
        assert a[0, :, :4, 4:].abs().max() == 0
        assert (a[1] > 0).all()


def test_errors():
    cnn = create_model("cnn_tiny", num_classes=3, in_chans=1, img_size=8)
    with pytest.raises(ValueError, match="no MultiHeadAttention"):
        with recording_attention(cnn):
            pass
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout([torch.ones(1, 1, 2, 2) / 2], head_fusion="median")
    with pytest.raises(ValueError, match="self-attention"):
        attention_rollout([torch.ones(1, 1, 2, 3) / 3])
