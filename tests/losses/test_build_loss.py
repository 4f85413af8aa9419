"""The loss registry: every loss builds by name, and every option is checked."""

import inspect

import pytest
import torch

from archlab.losses import LOSSES, build_loss, loss_options

REQUIRED = {"center": {"num_classes": 3, "feat_dim": 4}}


def test_registered_names():
    assert LOSSES.list() == ["center", "contrastive", "cross_entropy", "dice", "distillation",
                             "focal", "nt_xent", "triplet", "triplet_batch_hard"]


@pytest.mark.parametrize("name", LOSSES.list())
def test_builds_by_name_and_documents_inputs(name):
    loss = build_loss(name, **REQUIRED.get(name, {}))
    assert isinstance(loss, torch.nn.Module)
    inputs = LOSSES.entry(name).meta["inputs"]
    assert tuple(inspect.signature(loss.forward).parameters) == inputs
    assert loss.forward.__doc__ and "Args:" in loss.forward.__doc__


@pytest.mark.parametrize("name", LOSSES.list())
def test_reduction_is_checked(name):
    assert loss_options(name)["reduction"] == "mean"
    with pytest.raises(ValueError, match=f"{name}: reduction must be one of"):
        build_loss(name, reduction="avg", **REQUIRED.get(name, {}))


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="did you mean focal"):
        build_loss("focl")
    with pytest.raises(ValueError, match="did you mean gamma"):
        build_loss("focal", gama=2.0)
    with pytest.raises(ValueError, match="needs option"):
        build_loss("center")
    with pytest.raises(ValueError, match="gamma must be a finite number"):
        build_loss("focal", gamma="2")
