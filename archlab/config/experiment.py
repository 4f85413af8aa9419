"""ExperimentConfig composes every component's own config section."""

from __future__ import annotations

from dataclasses import field

from archlab.analysis.diagnostics import DiagnosticsConfig
from archlab.config._base import config_dataclass
from archlab.data.config import DataConfig
from archlab.models.config import ModelConfig
from archlab.train.callbacks import CallbacksConfig
from archlab.train.optim import OptimConfig
from archlab.train.schedules import ScheduleConfig
from archlab.train.task import TaskConfig
from archlab.train.trainer import TrainConfig


@config_dataclass
class ExperimentConfig:
    experiment: str = "default"
    """Group name in the run store (runs/<experiment>/<run_id>)."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    """Training diagnostics: ``all``, a list such as ``[grad_flow, dead_units]``, or a
    mapping of options (see archlab.analysis.diagnostics)."""

    def __post_init__(self) -> None:
        # Rules that span two sections; each section checks its own fields.
        if self.data.views == 2 and self.task.name != "metric_learning":
            raise ValueError("data.views=2 yields two augmented views of each image, which only "
                             "task.name=metric_learning uses (e.g. with loss nt_xent); remove it "
                             f"for task '{self.task.name}'")
