"""DropPath / SpatialDropout / DropConnect: expectation, eval identity, mask structure."""

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from archlab.layers.drop import DropConnect, DropPath, SpatialDropout, drop_connect, drop_path

P = 0.3  # wrong scales give means of 0.7 (none) or 2.33 (1/p) instead of 1


def test_drop_path_preserves_expectation_and_drops_whole_samples():
    torch.manual_seed(0)
    x = torch.ones(40_000, 3, 2)
    out = DropPath(P).train()(x)
    # sample std of the mean is sqrt(p/(1-p))/sqrt(N) ≈ 0.003; 0.02 is > 6 sigma
    assert abs(out.mean().item() - 1.0) < 0.02
    per_sample = out.flatten(1)
    assert torch.equal(per_sample.amin(1), per_sample.amax(1))  # all-or-nothing per sample
    values = per_sample[:, 0]
    assert torch.allclose(values[values > 0], torch.full_like(values[values > 0], 1 / (1 - P)))
    assert abs((values == 0).float().mean().item() - P) < 0.02


def test_drop_path_eval_and_zero_rate_are_identity():
    x = torch.randn(8, 4, 5, 5)
    assert torch.equal(DropPath(0.5).eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.count_nonzero(DropPath(1.0).train()(x)) == 0


def test_spatial_dropout_drops_whole_channels_per_sample():
    torch.manual_seed(0)
    x = torch.ones(400, 64, 3, 3)
    out = SpatialDropout(P).train()(x)
    assert abs(out.mean().item() - 1.0) < 0.02
    maps = out.flatten(2)
    assert torch.equal(maps.amin(2), maps.amax(2))  # each (sample, channel) map all-or-nothing
    kept = maps[..., 0]
    assert abs((kept == 0).float().mean().item() - P) < 0.02
    assert not torch.equal(kept[0], kept[1])  # a fresh mask per sample, not per batch
    # Same statistics as torch's Dropout2d: identical set of output values.
    ref = F.dropout2d(x, P, training=True)
    assert set(ref.unique().tolist()) == set(out.unique().tolist())


def test_spatial_dropout_eval_identity_and_rejects_flat_input():
    x = torch.randn(2, 3, 4, 4)
    assert torch.equal(SpatialDropout(0.5).eval()(x), x)
    with pytest.raises(ValueError, match="B, C"):
        SpatialDropout(0.5).train()(torch.randn(2, 3))


def test_drop_connect_masks_individual_weights_with_inverse_scaling():
    torch.manual_seed(0)
    fc = nn.Linear(64, 64)
    layer = DropConnect(fc, P).train()
    eye = torch.eye(64)
    w_eff = (layer(eye) - fc.bias).T  # identity input reveals the effective weight
    zero = w_eff.abs() < 1e-7
    assert abs(zero.float().mean().item() - P) < 0.05
    assert torch.allclose(w_eff[~zero], fc.weight[~zero] / (1 - P), atol=1e-6)
    # not all-or-nothing per row: individual weights are dropped
    assert (zero.any(1) & ~zero.all(1)).all()


def test_drop_connect_expectation_and_eval_identity_on_conv():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = DropConnect(conv, P)
    x = torch.randn(2, 3, 6, 6)
    assert torch.equal(layer.eval()(x), conv(x))
    layer.train()
    with torch.no_grad():
        mean = torch.stack([layer(x) for _ in range(4000)]).mean(0)
        ref = conv(x)
    # expectation of the masked-and-rescaled conv is the plain conv
    assert (mean - ref).abs().max() < 0.05 * ref.abs().max()
    assert not torch.allclose(layer(x), ref)


def test_drop_connect_functional_and_validation():
    w = torch.randn(5, 5)
    assert torch.equal(drop_connect(w, 0.5, training=False), w)
    assert torch.count_nonzero(drop_connect(w, 1.0, training=True)) == 0
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        DropPath(1.5)
    with pytest.raises(TypeError, match="weight"):
        DropConnect(nn.ReLU())
