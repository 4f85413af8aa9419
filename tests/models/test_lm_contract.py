"""Registry-driven: every model registered with task="language_model" gets the language-model
contract checked for free (shapes, default_cfg, example inputs, FLOPs, head reset, gradients)."""

from __future__ import annotations

import pytest
import torch

from archlab.models import MODELS, count_flops, create_model, list_models
from archlab.models._contract import Classifier

LANGUAGE_MODELS = [n for n in list_models() if MODELS.entry(n).meta.get("task") == "language_model"]
V, T, B = 17, 12, 3


def test_language_models_are_registered():
    assert {"gpt_char", "lstm_lm", "gru_lm", "rnn_lm"} <= set(LANGUAGE_MODELS)


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_language_model_contract(name):
    torch.manual_seed(0)
    model = create_model(name, vocab_size=V, block_size=T)
    entry = MODELS.entry(name)
    assert isinstance(model, Classifier)
    assert model.block_size == T and model.num_classes == V
    cfg = model.default_cfg
    assert cfg.input_size == (T,) and cfg.num_classes == V and cfg.first_conv is None
    assert (cfg.mean, cfg.std) == ((0.0,), (1.0,))
    assert cfg.family == entry.meta["family"] and cfg.paper == entry.meta["paper"] != ""
    assert model.get_classifier() is model.get_submodule(cfg.classifier)
    assert model.get_classifier().out_features == V

    (example,) = model.example_inputs(batch_size=2)
    assert example.shape == (2, T) and example.dtype == torch.long
    assert count_flops(model, cfg.input_size) > 0

    idx = torch.randint(0, V, (B, T))
    model.train()
    logits = model(idx)
    assert logits.shape == (B, T, V)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), idx.roll(-1, 1).flatten()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing/non-finite grad"
    assert all(g.abs().sum() > 0 for g in grads), "a parameter gets no gradient"

    model.eval()
    with torch.no_grad():
        for length in (1, T):
            short = idx[:, :length]
            hidden = model.forward_features(short)
            assert hidden.shape == (B, length, model.num_features)
            torch.testing.assert_close(model.forward_head(hidden), model(short))
            assert model.forward_head(hidden, pre_logits=True).shape == hidden.shape
            inter = model.forward_intermediates(short)
            assert len(inter) >= 1
            assert all(h.shape[:2] == (B, length) and h.ndim == 3 for h in inter)
        model.reset_classifier(5)
        assert model(idx).shape == (B, T, 5) and model.num_classes == 5
        assert model.get_classifier().out_features == 5
        assert model.get_classifier().weight.data_ptr() != next(model.parameters()).data_ptr()
        model.reset_classifier(0)
        assert model(idx).shape == (B, T, model.num_features)


@pytest.mark.parametrize("name", LANGUAGE_MODELS)
def test_builds_on_meta_and_rejects_unknown_options(name):
    with torch.device("meta"):
        model = create_model(name, vocab_size=V, block_size=T)
    assert model.example_inputs(1)[0].device.type == "meta"
    with pytest.raises(TypeError, match="valid options"):
        create_model(name, vocab_size=V, block_size=T, hidden=3)
