"""One readable line per epoch (and a live step counter on a terminal)."""

from __future__ import annotations

import sys
import time

from archlab.train.callbacks.base import Callback

SHOWN = ("train.loss", "train.acc", "val.loss", "val.acc", "val.bpc", "lr")


class ProgressBar(Callback):
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self._start = time.perf_counter()

    def on_train_epoch_start(self, trainer) -> None:
        self._start = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, trainer, out) -> None:
        if self.live:
            self._steps += 1
            total = len(trainer.train_loader) // trainer.cfg.accumulate_steps
            self.stream.write(f"\repoch {trainer.epoch + 1}/{trainer.cfg.epochs} "
                              f"step {self._steps}/{total}")
            self.stream.flush()

    def on_validation_end(self, trainer, metrics) -> None:
        parts = [f"{k} {metrics[k]:.4f}" if k != "lr" else f"lr {metrics[k]:.3g}"
                 for k in SHOWN if k in metrics]
        elapsed = time.perf_counter() - self._start
        prefix = "\r" if self.live else ""
        self.stream.write(f"{prefix}epoch {trainer.epoch}/{trainer.cfg.epochs}  "
                          f"{'  '.join(parts)}  {elapsed:.1f}s\n")
        self.stream.flush()
