"""Tasks: one file per kind of learning, each registered with its config class.

Importing the package registers every task module in it; :data:`TaskConfig` is then the union
of their config classes chosen by ``name`` (``classification`` when the name is left out), so
``task:`` in a config file takes exactly the options of the task it names.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Annotated, Any, Union

from pydantic import Discriminator, Tag

from archlab.tasks.base import (TASKS, Batch, RunReference, Task, TrainedModel, build_task,
                                unwrap)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

DEFAULT_TASK = "classification"


def _task_name(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("name", DEFAULT_TASK)
    return getattr(value, "name", None)


TaskConfig = Annotated[
    Union[tuple(Annotated[TASKS.entry(name).meta["config"], Tag(name)] for name in TASKS)],
    Discriminator(_task_name)]

__all__ = ["TASKS", "Batch", "RunReference", "Task", "TaskConfig", "TrainedModel", "build_task",
           "unwrap"]
