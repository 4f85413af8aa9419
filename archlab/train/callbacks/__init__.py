"""Callbacks and the config that switches them on."""

from __future__ import annotations

from dataclasses import field

from archlab.config import config_dataclass
from archlab.train.callbacks.base import Callback
from archlab.train.callbacks.checkpoint import CheckpointConfig, ModelCheckpoint
from archlab.train.callbacks.early_stopping import EarlyStopping, EarlyStoppingConfig
from archlab.train.callbacks.ema import EMA, EMAConfig
from archlab.train.callbacks.metric_logger import MetricLogger
from archlab.train.callbacks.progress import ProgressBar


@config_dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    progress: bool = True
    tensorboard: bool = False


__all__ = ["EMA", "Callback", "CallbacksConfig", "CheckpointConfig", "EarlyStopping",
           "EarlyStoppingConfig", "EMAConfig", "MetricLogger", "ModelCheckpoint", "ProgressBar"]
