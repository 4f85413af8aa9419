"""ExperimentConfig composes every component's own config section; load_config reads one.

``load_config("configs/fashion_mnist/default.yaml", ["train.epochs=3", "optim.lr=0.05"])``.
It sits beside :func:`~archlab.runs.experiment.run_experiment`, the composition root, because it
names every section; the strict machinery it uses is :mod:`archlab.config`.
"""

from __future__ import annotations

from dataclasses import field
from pathlib import Path
from typing import Iterable

import yaml
from pydantic import field_validator

from archlab.analysis.diagnostics import DiagnosticsConfig
from archlab.config import config_dataclass
from archlab.config.loading import (ConfigError, apply_overrides, format_errors, read_yaml,
                                    to_dict, validate)
from archlab.data import DATASETS
from archlab.data.config import DataConfig
from archlab.models.config import ModelConfig
from archlab.runs.store import check_experiment_name
from archlab.tasks import TaskConfig
from archlab.tasks.classification import ClassificationConfig
from archlab.train.callbacks import CallbacksConfig
from archlab.train.optim import OptimConfig
from archlab.train.schedules import ScheduleConfig
from archlab.train.trainer import TrainConfig

__all__ = ["ConfigError", "ExperimentConfig", "build_config", "config_to_dict", "format_errors",
           "load_config", "load_run_config", "save_config"]


@config_dataclass
class ExperimentConfig:
    experiment: str = "default"
    """Group name in the run store (runs/<experiment>/<run_id>)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=ClassificationConfig)
    """The kind of learning, chosen by ``name`` (classification, distillation, metric_learning,
    language_model); each task defines its own options (archlab/tasks/<name>.py)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    """Training diagnostics: ``all``, a list such as ``[grad_flow, dead_units]``, or a
    mapping of options (see archlab.analysis.diagnostics)."""

    @field_validator("experiment")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        return check_experiment_name(name)

    def __post_init__(self) -> None:
        # Rules that span two sections; each section checks its own fields.
        task = type(self.task)
        if self.data.views not in task.DATA_VIEWS:
            raise ValueError(f"data.views={self.data.views}: task '{self.task.name}' takes "
                             f"{' or '.join(map(str, task.DATA_VIEWS))} view(s) of each example "
                             f"(two augmented views are for metric learning, e.g. loss nt_xent)")
        kind = DATASETS.entry(self.data.name).meta.get("kind", "images")
        if kind != task.DATA_KIND:
            raise ValueError(f"task '{self.task.name}' trains on {task.DATA_KIND} datasets but "
                             f"data.name={self.data.name} is {kind}; choose a "
                             f"{task.DATA_KIND} dataset (archlab data ls)")


def build_config(tree: dict, source: str = "config") -> ExperimentConfig:
    return validate(ExperimentConfig, tree, source)


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> ExperimentConfig:
    tree = read_yaml(path) if path is not None else {}
    apply_overrides(tree, overrides, ExperimentConfig)
    return build_config(tree, str(path) if path else "config")


def config_to_dict(cfg: ExperimentConfig) -> dict:
    """Plain JSON/YAML types; feeding it back to build_config gives an equal config."""
    return to_dict(ExperimentConfig, cfg)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    path = Path(run_dir) / "config.yaml"
    return build_config(read_yaml(path), str(path))
