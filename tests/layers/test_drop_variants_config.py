"""``model.drop_connect`` and the CNN's ``spatial_drop_rate`` option, built from the config the
way a run builds its model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from archlab.runs.config import ConfigError, load_config
from archlab.layers.drop import DropConnect, SpatialDropout
from archlab.models import create_model

MLP = ["data.name=digits", "model.name=mlp",
       "model.options={img_size: 8, depth: 3, width: 16}"]
P = 0.3


def _build(overrides: list[str], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return load_config(None, overrides).model.build(num_classes=10, in_chans=1)


def test_drop_connect_wraps_every_linear():
    plain = create_model("mlp", num_classes=10, in_chans=1, img_size=8, depth=3, width=16)
    n_linear = sum(type(m) is nn.Linear for m in plain.modules())
    assert n_linear == 4  # three hidden layers and the classifier
    model = _build(MLP + [f"model.drop_connect={P}"])
    wrappers = [m for m in model.modules() if isinstance(m, DropConnect)]
    assert len(wrappers) == n_linear
    assert all(w.p == P and type(w.module) is nn.Linear for w in wrappers)
    wrapped = {id(w.module) for w in wrappers}
    assert all(id(m) in wrapped for m in model.modules() if type(m) is nn.Linear)
    assert isinstance(model.fc, DropConnect)
    # the default leaves the model alone
    assert not any(isinstance(m, DropConnect) for m in _build(MLP).modules())


def test_drop_connect_train_differs_and_eval_equals_the_unwrapped_model():
    wrapped = _build(MLP + [f"model.drop_connect={P}"])
    plain = _build(MLP)  # same seed: wrapping happens after init, so the same weights
    x = torch.randn(32, 1, 8, 8)
    wrapped.eval(), plain.eval()
    assert torch.equal(wrapped(x), plain(x))
    torch.manual_seed(1)
    train_a = wrapped.train()(x)
    train_b = wrapped(x)
    assert not torch.allclose(train_a, plain(x), atol=1e-3)
    assert not torch.allclose(train_a, train_b, atol=1e-3)  # a fresh mask every forward


def test_drop_connect_drops_individual_weights_of_the_built_classifier():
    model = _build(MLP + [f"model.drop_connect={P}"])
    fc = model.fc.train()
    linear = fc.module
    torch.manual_seed(0)
    # identity input: row j of the output is column j of the used weight plus the bias
    used = (fc(torch.eye(16)) - linear.bias).T  # (10, 16) = W ⊙ M
    scale = (used / linear.weight).detach()
    dropped = scale.abs() < 1e-4
    assert torch.allclose(scale[~dropped], torch.full_like(scale[~dropped], 1 / (1 - P)),
                          rtol=1e-4)
    assert 0.1 < dropped.float().mean().item() < 0.5  # rate 0.3 over 160 weights
    # per weight: rows (output units) and columns (inputs) are partly kept, partly dropped
    mixed_rows = dropped.any(dim=1) & ~dropped.all(dim=1)
    mixed_cols = dropped.any(dim=0) & ~dropped.all(dim=0)
    assert mixed_rows.sum() >= 5 and mixed_cols.sum() >= 5


def test_drop_connect_rate_is_validated():
    with pytest.raises(ConfigError, match="drop_connect"):
        load_config(None, MLP + ["model.drop_connect=1.0"])


SPATIAL = 0.5


def test_spatial_dropout_zeroes_whole_channels_after_every_stage():
    # 32x32 input: maps of 16x16, 8x8 and 4x4 after the three stages, so "whole map" means a lot
    model = _build(["data.name=digits", "model.name=cnn_tiny",
                    f"model.options={{img_size: 32, spatial_drop_rate: {SPATIAL}}}"])
    layers = [m for m in model.modules() if isinstance(m, SpatialDropout)]
    assert len(layers) == 3 and all(m.p == SPATIAL for m in layers)
    assert all(isinstance(stage[-1], SpatialDropout) for stage in model.stages)
    seen = []
    for m in layers:
        m.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    torch.manual_seed(0)
    x = torch.randn(32, 1, 32, 32)
    model.train()(x)
    assert len(seen) == 3
    drop_fraction = []
    for inp, out in seen:
        inp, out = inp.detach().flatten(2), out.detach().flatten(2)  # (B, C, H*W)
        # per (example, channel) one factor s in {0, 1/(1-p)} for the whole map: out = s * inp,
        # read off at the map's largest input (maps the ReLU zeroed entirely have s = 0)
        nonzero = inp.abs().amax(2) > 0  # (B, C)
        at = inp.abs().argmax(2, keepdim=True)
        factor = torch.where(nonzero, (out.gather(2, at) / inp.gather(2, at)).squeeze(2), 0.0)
        assert torch.allclose(out, inp * factor[..., None], rtol=1e-5, atol=1e-6)
        kept = factor[nonzero]
        is_zero, is_scaled = kept == 0, (kept - 1 / (1 - SPATIAL)).abs() < 1e-5
        assert (is_zero | is_scaled).all()
        assert nonzero.float().mean() > 0.25  # enough live maps to test on
        drop_fraction.append(is_zero.float().mean().item())
    assert 0.4 < sum(drop_fraction) / 3 < 0.6
    seen.clear()
    model.eval()(x)
    assert all(torch.equal(inp, out) for inp, out in seen)


def test_spatial_dropout_rate_zero_adds_no_layer():
    model = _build(["data.name=digits", "model.name=cnn_tiny", "model.options={img_size: 8}"])
    assert not any(isinstance(m, SpatialDropout) for m in model.modules())
