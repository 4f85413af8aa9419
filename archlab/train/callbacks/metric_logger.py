"""Metric logging to the run's ``metrics.jsonl`` (and TensorBoard when asked and installed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from archlab.strict_json import strict_dumps
from archlab.train.callbacks.base import Callback


class MetricLogger(Callback):
    """Appends one JSON object per record: every ``log_every_steps`` optimizer steps
    (``train.loss_step``, ``lr``) and after every validation (the epoch's metrics)."""

    def __init__(self, path: str | Path, log_every_steps: int = 50,
                 tensorboard_dir: str | Path | None = None) -> None:
        self.path, self.log_every_steps = Path(path), log_every_steps
        self.writer = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise RuntimeError("callbacks.tensorboard is on but the 'tensorboard' package is "
                                   "not installed: pip install tensorboard") from e
            self.writer = SummaryWriter(str(tensorboard_dir))

    def _write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(strict_dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self.writer.add_scalar(k, v, record["step"])

    def on_train_batch_end(self, trainer, out) -> None:
        if trainer.global_step % self.log_every_steps == 0:
            self._write({"step": trainer.global_step, "epoch": trainer.epoch,
                         "train.loss_step": out["loss"].item(),
                         "lr": trainer.optimizer.param_groups[0]["lr"]})

    def on_validation_end(self, trainer, metrics) -> None:
        self._write({"step": trainer.global_step, "epoch": trainer.epoch, **metrics,
                     "train_time_s": round(trainer.train_time_s, 3)})

    def on_fit_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()


def truncate_metrics(run_dir: str | Path, max_step: int, filename: str = "metrics.jsonl") -> None:
    """Drop records of ``filename`` logged after ``max_step`` (a resumed run re-logs them),
    atomically."""
    path = Path(run_dir) / filename
    if not path.exists():
        return
    kept = []
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line torn by the kill
                continue
            if record.get("step", 0) <= max_step:
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
