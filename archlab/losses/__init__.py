"""Losses by name: ``build_loss("focal", gamma=2.0)``.

Every loss is an ``nn.Module`` registered in :data:`LOSSES` with keyword options checked at
construction and a ``forward`` whose inputs its registry entry names::

    LOSSES.list()                        # all names
    LOSSES.entry("triplet").meta         # {"inputs": ("anchor", "positive", "negative")}
    loss_fn = build_loss("cross_entropy", label_smoothing=0.1)
    loss = loss_fn(logits, target)

Losses with parameters (``center``) must be moved to the model's device and given to the
optimizer and the checkpoint like a model.
"""

from __future__ import annotations

import difflib
import inspect

from torch import nn

from archlab.losses._registry import LOSSES
from archlab.losses.center import CenterLoss
from archlab.losses.contrastive import ContrastiveLoss
from archlab.losses.cross_entropy import CrossEntropyLoss
from archlab.losses.dice import DiceLoss
from archlab.losses.distillation import DistillationLoss
from archlab.losses.focal import FocalLoss
from archlab.losses.nt_xent import NTXentLoss
from archlab.losses.triplet import BatchHardTripletLoss, TripletLoss


def loss_options(name: str) -> dict[str, object]:
    """Option name -> default (``inspect.Parameter.empty`` when required) for loss ``name``."""
    params = inspect.signature(LOSSES.get(name)).parameters
    return {p.name: p.default for p in params.values() if p.kind is p.KEYWORD_ONLY}


def build_loss(name: str, **options: object) -> nn.Module:
    """A fresh loss module ``name`` configured with ``options``.

    Unknown names and unknown options raise errors listing the valid choices; option values
    are checked by the loss itself (``ValueError`` naming the option and its range).
    """
    valid = loss_options(name)
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"loss '{name}' has no option '{key}'{hint} "
                             f"(options: {', '.join(valid) or 'none'})")
    missing = [k for k, v in valid.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise ValueError(f"loss '{name}' needs option(s) {', '.join(missing)}")
    return LOSSES.get(name)(**options)


__all__ = ["LOSSES", "build_loss", "loss_options", "BatchHardTripletLoss", "CenterLoss",
           "ContrastiveLoss", "CrossEntropyLoss", "DiceLoss", "DistillationLoss", "FocalLoss",
           "NTXentLoss", "TripletLoss"]
