"""Callback: the named hooks the Trainer calls. Implement only the ones you need.

Hook order per fit: on_fit_start, then per epoch on_train_epoch_start, per optimizer step
on_before_optimizer_step / on_train_batch_end, on_train_epoch_end, on_validation_start /
on_validation_end, and finally on_fit_end. To stop training set ``trainer.should_stop = True``.
Callbacks with state implement ``state_dict`` / ``load_state_dict``; it goes into checkpoints.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, ContextManager

if TYPE_CHECKING:
    from archlab.train.trainer import Trainer


class Callback:
    #: Run this callback on every rank (default: rank 0 only, e.g. logging, checkpoints).
    all_ranks: bool = False

    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_train_epoch_start(self, trainer: "Trainer") -> None: ...

    def on_before_optimizer_step(self, trainer: "Trainer") -> None: ...

    def on_train_batch_end(self, trainer: "Trainer", out: dict[str, Any]) -> None: ...

    def on_train_epoch_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...

    def on_validation_start(self, trainer: "Trainer") -> None: ...

    def on_validation_end(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def evaluation_weights(self, trainer: "Trainer") -> ContextManager:
        """Context in which the model holds the weights to evaluate (EMA swaps its average in)."""
        return contextlib.nullcontext()

    def evaluation_state(self) -> tuple[str, dict] | None:
        """(name, state_dict) of the weights evaluation uses when they are not the model's own
        (EMA: ("ema", its average)); recorded in checkpoints so tools load what was scored."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
