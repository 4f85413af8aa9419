"""archlab: build, train, compare, inspect and ship neural architectures.

The short path::

    import archlab
    model = archlab.create_model("resnet20", num_classes=10, in_chans=1)
    cfg = archlab.load_config("configs/fashion_mnist/default.yaml", ["train.epochs=3"])
    result = archlab.run_experiment(cfg)
    study = archlab.run_study(archlab.load_study("studies/activations.yaml"), quick=True)
"""

from archlab.runs.config import ConfigError, ExperimentConfig, load_config
from archlab.models import create_model, list_models, model_info
from archlab.models._weights import load_pretrained
from archlab.profiling import profile
from archlab.runs.experiment import RunResult, run_experiment
from archlab.runs.store import RunStore
from archlab.tasks import TASKS, Task, build_task
from archlab.studies import StudyConfig, aggregate_study, load_study, run_study, write_report
from archlab.train.callbacks import Callback
from archlab.train.trainer import Trainer

__all__ = ["Callback", "ConfigError", "ExperimentConfig", "RunResult", "RunStore", "StudyConfig",
           "TASKS", "Task", "Trainer", "build_task", "aggregate_study", "create_model", "list_models", "load_config",
           "load_pretrained", "load_study", "model_info", "profile", "run_experiment",
           "run_study", "write_report"]
__version__ = "0.1.0"
