"""Metric logging to the run's ``metrics.jsonl`` (and TensorBoard when asked and installed)."""

from __future__ import annotations

import json
from pathlib import Path

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
            f.write(json.dumps(record) + "\n")
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
