"""Registry-driven: every registered image classifier gets the model contract checked for free."""

from __future__ import annotations

import pytest
import torch

from archlab.models import MODELS, create_model, list_models
from archlab.models._contract import Classifier

IMAGE_CLASSIFIERS = [n for n in list_models() if "task" not in MODELS.entry(n).meta]
LIGHT = [n for n in IMAGE_CLASSIFIERS if not MODELS.entry(n).meta.get("heavy")]
HEAVY = [n for n in IMAGE_CLASSIFIERS if MODELS.entry(n).meta.get("heavy")]


def build_small(name: str, num_classes: int = 7) -> Classifier:
    kwargs = {"num_classes": num_classes, "in_chans": 1}
    try:
        return create_model(name, stem="small", **kwargs)
    except TypeError as e:
        if "stem" not in str(e):
            raise
        return create_model(name, **kwargs)


def logits_of(out):
    return out["logits"] if isinstance(out, dict) else out


def test_registry_has_the_families():
    families = {MODELS.entry(n).meta["family"] for n in list_models()}
    for family in ("mlp", "cnn", "resnet", "resnet_cifar", "vgg", "densenet", "mobilenet",
                   "efficientnet", "vit"):
        assert family in families, family


@pytest.mark.parametrize("name", LIGHT)
def test_forward_backward_shapes_and_contract(name):
    torch.manual_seed(0)
    model = build_small(name)
    assert isinstance(model, Classifier)
    cfg = model.default_cfg
    assert cfg.input_size[0] == 1 and cfg.num_classes == 7
    x = torch.randn(2, *cfg.input_size)
    model.train()
    out = model(x)
    logits = logits_of(out)
    assert logits.shape == (2, 7)
    loss = logits.logsumexp(-1).mean()
    for aux in (out.get("aux_logits", []) if isinstance(out, dict) else []):
        assert aux.shape == (2, 7)
        loss = loss + aux.logsumexp(-1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing/non-finite grad"
    assert any(g.abs().sum() > 0 for g in grads)

    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model.forward_head(feats)
        assert torch.isfinite(logits).all() and logits.shape == (2, 7)
        torch.testing.assert_close(logits, model(x))
        emb = model.forward_head(feats, pre_logits=True)
        assert emb.shape == (2, model.num_features)
        inter = model.forward_intermediates(x)
        assert len(inter) >= 1 and all(t.shape[0] == 2 for t in inter)
        assert model.get_classifier() is model.get_submodule(cfg.classifier)
        if cfg.first_conv is not None:
            first = model.get_submodule(cfg.first_conv)
            assert isinstance(first, torch.nn.Conv2d) and first.in_channels == 1
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.num_classes == 3
        model.reset_classifier(0)
        assert model(x).shape == (2, model.num_features)


@pytest.mark.parametrize("name", HEAVY)
def test_heavy_models_build_on_meta(name):
    with torch.device("meta"):
        model = build_small(name)
    assert isinstance(model, Classifier) and model.default_cfg.num_classes == 7


def test_unknown_override_lists_valid_options():
    with pytest.raises(TypeError, match="valid options"):
        create_model("resnet18", widht=3)
