"""Exponential moving average of the weights (Polyak averaging), evaluated instead of the raw
weights. The decay warms up as min(decay, (1 + n) / (10 + n)) (as in TensorFlow's
ExponentialMovingAverage with num_updates) so early averages are not dominated by the random
init."""

from __future__ import annotations

import contextlib
from typing import Annotated

import torch
from pydantic import Field

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback


@config_dataclass
class EMAConfig:
    enabled: bool = False
    decay: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.999
    every_steps: Annotated[int, Field(ge=1)] = 1
    """Update every k optimizer steps (the decay applies per update)."""


class EMA(Callback):
    all_ranks = True  # every rank evaluates with the same averaged weights

    def __init__(self, decay: float = 0.999, every_steps: int = 1) -> None:
        self.decay, self.every_steps = decay, every_steps
        self.shadow: dict[str, torch.Tensor] = {}
        self.num_updates = 0

    def on_fit_start(self, trainer) -> None:
        live = trainer.model.state_dict()
        if not self.shadow:
            self.shadow = {k: v.detach().clone() for k, v in live.items()}
        else:  # resumed: checkpoints load on the CPU, the model may be on an accelerator
            self.shadow = {k: v.to(live[k].device) for k, v in self.shadow.items()}

    @torch.no_grad()
    def on_train_batch_end(self, trainer, out) -> None:
        if trainer.global_step % self.every_steps:
            return
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for name, value in trainer.model.state_dict().items():
            avg = self.shadow[name]
            if value.dtype.is_floating_point:
                avg.lerp_(value, 1.0 - decay)
            else:  # integer buffers (BN's num_batches_tracked) are copied
                avg.copy_(value)

    @contextlib.contextmanager
    def evaluation_weights(self, trainer):
        if not self.shadow:
            yield
            return
        raw = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        trainer.model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            trainer.model.load_state_dict(raw)

    def evaluation_state(self) -> tuple[str, dict] | None:
        return ("ema", self.shadow) if self.shadow else None

    def set_average(self, weights: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.detach().clone() for k, v in weights.items()}

    def state_dict(self) -> dict:
        return {"shadow": self.shadow, "num_updates": self.num_updates}

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.shadow = {k: v.clone() for k, v in state["shadow"].items()}
            self.num_updates = state["num_updates"]
