"""Checkpoints on their own: rebuild a run's model from what its checkpoint says, evaluate it.

A checkpoint describes itself (see :mod:`archlab.train.callbacks.checkpoint`): the model spec
rebuilds the architecture, ``weights`` says which weights were evaluated, the task's saved
state restores what predictions need (metric learning's class centroids), ``data`` says what
the model was fed. Nothing here loads a dataset except to evaluate on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.models.config import build_model
from archlab.runs.config import ExperimentConfig, build_config
from archlab.tasks import TASKS, build_task
from archlab.train.checkpoint_io import CheckpointError, load_checkpoint
from archlab.train.device import wants_channels_last
from archlab.train.evaluate import evaluate
from archlab.train.precision import resolve_precision


@dataclass
class LoadedModel:
    """A trained model rebuilt from a checkpoint, in eval mode, with the weights it was
    evaluated with and the scores the run reported (a metric-learning run's centroid head)."""
    model: nn.Module
    cfg: ExperimentConfig
    checkpoint: dict[str, Any]
    data: dict[str, Any]  # the checkpoint's data description (classes, input size, vocab, ...)
    output_kind: str  # what the scores are: "logits", or e.g. cosine similarities


def evaluation_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The weights a checkpoint was evaluated with (EMA's average if EMA was on)."""
    weights = checkpoint.get("evaluation_model")
    return weights if weights is not None else checkpoint["model"]


def run_checkpoint(run: str | Path, which: str = "best", what: str = "run") -> Path:
    """The checkpoint file of a run directory (``best`` falls back to ``last`` when the run
    saved no best), or ``run`` itself when it is a file; errors name ``what`` was asked for."""
    path = Path(run).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: {path} is neither a run directory nor a checkpoint "
                                f"file")
    names = ["best.ckpt", "last.ckpt"] if which == "best" else [f"{which}.ckpt"]
    for name in names:
        if (path / "checkpoints" / name).is_file():
            return path / "checkpoints" / name
    raise FileNotFoundError(f"{what}: {path} has no checkpoints/{names[0]}; was it trained with "
                            f"callbacks.checkpoint.enabled=true?")


def run_manifest(cfg: ExperimentConfig, bundle) -> dict[str, Any]:
    """What a run's checkpoints and meta.json say about it: model spec (with the constructor
    arguments ``bundle`` fixes), task name and what its scores are, data description."""
    return {"model_spec": cfg.model.spec(**bundle.model_kwargs()),
            "task": {"name": cfg.task.name,
                     "output_kind": TASKS.get(cfg.task.name).output_kind},
            "data": bundle.describe()}


def _legacy_manifest(cfg: ExperimentConfig) -> dict[str, Any]:
    """Format-1 checkpoints (before self-description) carry only the config: the data's
    constructor arguments come from loading the dataset once."""
    from archlab.data.pipeline import load_dataset

    return run_manifest(cfg, load_dataset(cfg.data))


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], ExperimentConfig]:
    """(checkpoint with its manifest keys filled in, its ExperimentConfig)."""
    checkpoint = load_checkpoint(path)
    if not isinstance(checkpoint, dict) or "config" not in checkpoint:
        raise CheckpointError(f"{path} is not an archlab checkpoint (no config in it)")
    cfg = build_config(checkpoint["config"], f"config stored in {path}")
    if "model_spec" not in checkpoint:
        checkpoint.update(_legacy_manifest(cfg))
    return checkpoint, cfg


def restore_model(checkpoint: dict[str, Any], device: str | torch.device = "cpu",
                  *, weights: str = "evaluation") -> nn.Module:
    """The architecture of ``checkpoint["model_spec"]`` with its evaluation (or raw) weights,
    on ``device`` in eval mode."""
    model = build_model(checkpoint["model_spec"])
    state = evaluation_state_dict(checkpoint) if weights == "evaluation" else checkpoint["model"]
    model.load_state_dict(state)
    return model.to(device).eval()


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model a checkpoint stands for, scoring the way its run was scored: for a
    metric-learning run the Linear head is replaced by the cosine similarity to the saved class
    centroids (its task's ``inference_model``)."""
    checkpoint, cfg = read_checkpoint(path)
    model = restore_model(checkpoint, device)
    task_cls = TASKS.get(checkpoint["task"]["name"])
    model = task_cls.inference_model(model, checkpoint.get("trainer", {}).get("task", {}))
    return LoadedModel(model.to(device).eval(), cfg, checkpoint, checkpoint["data"],
                       checkpoint["task"].get("output_kind", task_cls.output_kind))


def run_architecture(run_dir: str | Path) -> tuple[nn.Module, tuple[int, ...], ExperimentConfig]:
    """(The run's model, untrained; its input size; its config) from the manifest its meta.json
    keeps (model spec, data description). Runs from before manifests load their dataset once."""
    import json

    from archlab.runs.config import load_run_config

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    meta_path = run_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    manifest = meta if "model_spec" in meta else _legacy_manifest(cfg)
    return (build_model(manifest["model_spec"]), tuple(manifest["data"]["input_size"]), cfg)


def load_run_target(ref: str | Path, runs_dir: str | Path = "runs"):
    """A run (by directory, id or unique id prefix) as a profiling target. A run directory is
    looked up in its own store (``<root>/<experiment>/<run_id>``) whatever ``runs_dir`` says."""
    from archlab.profiling.compare import RunTarget
    from archlab.runs.store import RunNotFoundError, RunStore

    path = Path(ref)
    if path.is_dir() and (path / "config.yaml").exists():
        root = path.resolve().parent.parent
    else:
        root = Path(runs_dir)
        if not (root / "index.sqlite").exists():
            raise RunNotFoundError(f"no run '{ref}': {root} holds no run store")
    record = RunStore(root).get(ref)
    model, input_size, cfg = run_architecture(record.path)
    acc = record.metrics.get("test.acc")
    return RunTarget(run_id=record.run_id, model_name=cfg.model.name, model=model,
                     input_size=input_size, accuracy=None if acc is None else float(acc))


def evaluate_checkpoint(path: str | Path, *, split: str = "test", tta_flip: bool | None = None,
                        device: str = "cpu") -> dict[str, float]:
    """The checkpoint's task metrics on ``split`` of its dataset (loaded here, as evaluation
    needs the data); ``tta_flip`` overrides a classification run's setting."""
    import dataclasses

    from archlab.data.pipeline import build_loaders

    checkpoint, cfg = read_checkpoint(path)
    task_cfg = cfg.task
    if tta_flip is not None:
        if "tta_flip" not in {f.name for f in dataclasses.fields(task_cfg)}:
            raise ValueError(f"--tta-flip: task '{task_cfg.name}' has no flip test-time "
                             f"augmentation (it is for image classification)")
        task_cfg = dataclasses.replace(task_cfg, tta_flip=tta_flip)
    model = restore_model(checkpoint, device)
    # The run's memory layout too, so the kernels and the numbers are the run's own.
    channels_last = wants_channels_last(model, cfg.train.channels_last)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    task = build_task(model, task_cfg)
    task.load_state_dict(checkpoint.get("trainer", {}).get("task", {}))
    loaders = build_loaders(cfg.data, device=torch.device(device), seed=cfg.train.seed,
                            channels_last=channels_last)
    loader = loaders.test if split == "test" else loaders.val
    return evaluate(task, loader, resolve_precision("fp32", torch.device(device)), prefix=split)
