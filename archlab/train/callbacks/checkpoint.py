"""Checkpointing: ``last.ckpt`` every epoch, ``best.ckpt`` by a monitored metric, and the last k
epoch snapshots. Each file holds everything exact resume needs (model, optimizers, schedules,
scalers, task and callback state, counters, RNG states) and describes itself:

* ``config``: the resolved experiment config;
* ``model_spec``: registered name + every constructor argument (``archlab.models.config
  .build_model`` rebuilds the architecture without loading a dataset);
* ``task``: ``{"name", "output_kind"}``; ``data``: what the model was fed (classes, input size
  and normalization, or a text vocabulary);
* ``model``: the raw weights; ``weights``: which weights evaluation used ("raw" or "ema") and,
  when not raw, ``evaluation_model``: those weights (the same tensors as the EMA callback's
  state, so they are stored once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import Field

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback
from archlab.train.callbacks.early_stopping import improved
from archlab.train.checkpoint_io import save_checkpoint

CHECKPOINT_FORMAT = 2  # 2: self-describing (model_spec, task, data, weights)


@config_dataclass
class CheckpointConfig:
    enabled: bool = True
    monitor: Optional[str] = None
    """Metric that picks best.ckpt; None: the task's headline metric (val.acc for classifiers,
    val.loss for language models)."""
    mode: Optional[Literal["max", "min"]] = None
    """None: "min" for losses, bits per character and perplexity, else "max"."""
    save_best: bool = True
    keep_last_k: Annotated[int, Field(ge=0)] = 0
    """Also keep epoch_NNN.ckpt for the last k epochs (0: only last/best)."""


def checkpoint_payload(trainer, manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest``: {"config", "model_spec", "task", "data"} of the run."""
    state = trainer.state_dict()
    kind, weights = trainer.evaluation_state()
    payload = {"format": CHECKPOINT_FORMAT, **manifest, "model": state.pop("model"),
               "weights": kind, "trainer": state, "epoch": trainer.epoch,
               "metrics": dict(trainer.metrics)}
    if weights is not None:
        payload["evaluation_model"] = weights
    return payload


class ModelCheckpoint(Callback):
    def __init__(self, directory: str | Path, manifest: dict[str, Any], monitor: str = "val.acc",
                 mode: str = "max", save_best: bool = True, keep_last_k: int = 0) -> None:
        self.directory, self.manifest = Path(directory), manifest
        self.monitor, self.mode, self.save_best, self.keep_last_k = monitor, mode, save_best, keep_last_k
        self.best: float | None = None

    def on_validation_end(self, trainer, metrics) -> None:
        last = save_checkpoint(checkpoint_payload(trainer, self.manifest), self.directory / "last.ckpt")
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
