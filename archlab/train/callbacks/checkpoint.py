"""Checkpointing: ``last.ckpt`` every epoch, ``best.ckpt`` by a monitored metric, and the last k
epoch snapshots. Each file holds everything exact resume needs (model, optimizer, scheduler,
scaler, callbacks, counters, RNG states) plus the resolved config that rebuilds the model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback
from archlab.train.callbacks.early_stopping import improved
from archlab.train.checkpoint_io import save_checkpoint

CHECKPOINT_FORMAT = 1


@config_dataclass
class CheckpointConfig:
    enabled: bool = True
    monitor: str = "val.acc"
    mode: Literal["max", "min"] = "max"
    save_best: bool = True
    keep_last_k: Annotated[int, Field(ge=0)] = 0
    """Also keep epoch_NNN.ckpt for the last k epochs (0: only last/best)."""


def checkpoint_payload(trainer, config: dict[str, Any]) -> dict[str, Any]:
    state = trainer.state_dict()
    return {"format": CHECKPOINT_FORMAT, "config": config, "model": state.pop("model"),
            "trainer": state, "epoch": trainer.epoch, "metrics": dict(trainer.metrics)}


class ModelCheckpoint(Callback):
    def __init__(self, directory: str | Path, config: dict[str, Any], monitor: str = "val.acc",
                 mode: str = "max", save_best: bool = True, keep_last_k: int = 0) -> None:
        self.directory, self.config = Path(directory), config
        self.monitor, self.mode, self.save_best, self.keep_last_k = monitor, mode, save_best, keep_last_k
        self.best: float | None = None

    def on_validation_end(self, trainer, metrics) -> None:
        last = save_checkpoint(checkpoint_payload(trainer, self.config), self.directory / "last.ckpt")
        if self.save_best and self.monitor in metrics and improved(metrics[self.monitor], self.best,
                                                                   self.mode):
            self.best = metrics[self.monitor]
            _atomic_link(last, self.directory / "best.ckpt")
        if self.keep_last_k:
            _atomic_link(last, self.directory / f"epoch_{trainer.epoch:03d}.ckpt")
            snapshots = sorted(self.directory.glob("epoch_*.ckpt"))
            for old in snapshots[:-self.keep_last_k]:
                old.unlink()

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best")


def _atomic_link(src: Path, dst: Path) -> None:
    """dst becomes another name for src's file, replacing dst atomically."""
    tmp = dst.with_name(f".{dst.name}.link")
    tmp.unlink(missing_ok=True)
    os.link(src, tmp)
    os.replace(tmp, dst)
