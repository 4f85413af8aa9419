"""Shared fixtures: tiny real-data experiment configs and a run store in a temp dir."""

from __future__ import annotations

import os

import pytest
import torch

# Two cores: one intra-op thread per test process keeps timings sane when helpers run in parallel.
torch.set_num_threads(int(os.environ.get("ARCHLAB_TEST_THREADS", "1")))

TINY = [
    "data.name=digits",
    "model.name=cnn_tiny",
    "model.options={img_size: 8}",
    "data.batch_size=64",
    "train.epochs=2",
    "optim.lr=0.05",
    "callbacks.progress=false",
    # Tiny runs assert CPU properties (bitwise reproducibility, exact resume); on a machine with
    # a GPU "auto" would pick it. GPU paths have their own tests (marked gpu).
    "train.device=cpu",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    """Overrides for a seconds-long real run: sklearn digits (8x8) and a tiny CNN."""
    return list(TINY)


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"
