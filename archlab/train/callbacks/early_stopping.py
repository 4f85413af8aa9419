"""Stop when a monitored metric has not improved by ``min_delta`` for ``patience`` validations;
optionally put the best weights back at the end."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import torch
from pydantic import Field

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback


@config_dataclass
class EarlyStoppingConfig:
    enabled: bool = False
    monitor: Optional[str] = None
    """Metric to watch; None: the task's headline metric (val.acc for classifiers, val.loss
    for language models)."""
    mode: Optional[Literal["max", "min"]] = None
    """None: "min" for losses, bits per character and perplexity, else "max"."""
    patience: Annotated[int, Field(ge=1)] = 5
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0
    restore_best: bool = True


LOWER_IS_BETTER = ("loss", "bpc", "ppl", "nll")


def resolve_monitor(monitor: str | None, mode: str | None,
                    default: tuple[str, str]) -> tuple[str, str]:
    """(metric, mode) to watch: ``default`` (the task's) when no metric is named; a named metric
    without a mode goes down when it is a loss, bits/char or perplexity, up otherwise."""
    if monitor is None:
        return default if mode is None else (default[0], mode)
    if mode is None:
        mode = "min" if monitor.rsplit(".", 1)[-1] in LOWER_IS_BETTER else "max"
    return monitor, mode


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


class EarlyStopping(Callback):
    all_ranks = True  # every rank must stop at the same epoch

    def __init__(self, monitor: str = "val.acc", mode: str = "max", patience: int = 5,
                 min_delta: float = 0.0, restore_best: bool = True) -> None:
        self.monitor, self.mode, self.patience = monitor, mode, patience
        self.min_delta, self.restore_best = min_delta, restore_best
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.stopped_epoch: int | None = None

    def on_validation_end(self, trainer, metrics) -> None:
        if self.monitor not in metrics:
            raise KeyError(f"early stopping monitors '{self.monitor}' but the metrics are "
                           f"{sorted(metrics)}")
        value = metrics[self.monitor]
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, trainer.epoch, 0
            if self.restore_best:
                with trainer.evaluation_weights():
                    self.best_weights = {k: v.detach().clone()
                                         for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = trainer.epoch
                trainer.should_stop = True

    def on_fit_end(self, trainer) -> None:
        if self.restore_best and self.best_weights is not None and self.stopped_epoch is not None:
            trainer.model.load_state_dict(self.best_weights)
            for cb in trainer.callbacks:  # an EMA must average from the restored weights on
                if hasattr(cb, "set_average"):
                    cb.set_average(self.best_weights)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait,
                "best_weights": self.best_weights, "stopped_epoch": self.stopped_epoch}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
            self.best_weights, self.stopped_epoch = state["best_weights"], state["stopped_epoch"]

