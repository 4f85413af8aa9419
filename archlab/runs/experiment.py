"""run_experiment(cfg) -> RunResult: the single entry point used by the CLI, tests and studies.

It builds every component from its own config slice, wires the callbacks, trains with the one
Trainer, evaluates on the test split and records everything in the RunStore.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from archlab.data.pipeline import build_loaders, load_dataset
from archlab.distributed import barrier, broadcast_buffers, broadcast_object, init_distributed
from archlab.layers.variational_dropout import variational_kl
from archlab.runs.config import ExperimentConfig, config_to_dict, save_config
from archlab.models.config import build_model
from archlab.runs.evaluation import load_trained_model, run_checkpoint, run_manifest
from archlab.runs.provenance import collect_meta
from archlab.runs.store import RunStore
from archlab.tasks import TASKS, Task, TrainedModel, build_task
from archlab.train.callbacks import (EMA, Callback, EarlyStopping, MetricLogger, ModelCheckpoint,
                                     ProgressBar)
from archlab.train.callbacks.early_stopping import resolve_monitor
from archlab.train.callbacks.metric_logger import truncate_metrics
from archlab.train.checkpoint_io import load_checkpoint
from archlab.train.device import resolve_device, wants_channels_last
from archlab.train.optim import build_phase_optimizers, regularization_penalty
from archlab.train.precision import resolve_precision
from archlab.train.reproducibility import seed_everything, set_deterministic
from archlab.train.schedules import build_schedule
from archlab.train.trainer import Trainer


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str  # completed | failed
    metrics: dict[str, float]
    error: str | None = None
    model: nn.Module | None = field(default=None, repr=False)  # trained (evaluation) weights

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def run_experiment(cfg: ExperimentConfig, *, runs_dir: str | Path = "runs",
                   resume: str | Path | None = None, callbacks: Sequence[Callback] = (),
                   progress: bool | None = None) -> RunResult:
    """Train and evaluate one configuration; ``resume`` continues a run from its last checkpoint."""
    device = resolve_device(cfg.train.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    set_deterministic(cfg.train.deterministic)
    store = RunStore(runs_dir)
    config_dict = config_to_dict(cfg)

    # --- the run directory (rank 0 creates it, the others are told where it is)
    resume_state = None
    if resume is not None:
        record = store.get(resume)
        resume_state = load_checkpoint(record.path / "checkpoints" / "last.ckpt")
        run_id, run_dir = record.run_id, record.path
        if dist.is_main:
            truncate_metrics(run_dir, resume_state["trainer"]["global_step"])
            store.update(run_id, status="running")
    elif dist.is_main:
        record = store.create_run(cfg.experiment, seed=cfg.train.seed, model=cfg.model.name,
                                  dataset=cfg.data.name)
        run_id, run_dir = record.run_id, record.path
    else:
        run_id, run_dir = None, None
    run_id, run_dir = broadcast_object((run_id, run_dir), dist)

    try:
        result = _train(cfg, config_dict, store, run_id, Path(run_dir), device, dist,
                        resume_state, callbacks, progress)
    except BaseException as e:
        if dist.is_main:
            status = "interrupted" if isinstance(e, KeyboardInterrupt) else "failed"
            store.update(run_id, status=status, error=f"{type(e).__name__}: {e}")
        raise
    return result


def build_model_and_data(cfg: ExperimentConfig, device: torch.device, dist=None):
    """Seeded model on ``device`` (channels_last for conv nets), its data loaders and the run
    manifest (model spec, task, data description) that checkpoints carry."""
    seed_everything(cfg.train.seed)
    bundle = load_dataset(cfg.data)
    manifest = run_manifest(cfg, bundle)
    model = build_model(manifest["model_spec"])
    channels_last = wants_channels_last(model, cfg.train.channels_last)
    model = model.to(device, memory_format=torch.channels_last if channels_last
                     else torch.preserve_format)
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    loaders = build_loaders(cfg.data, device=device, seed=cfg.train.seed,
                            channels_last=channels_last, rank=rank, world_size=world,
                            bundle=bundle)
    return model, loaders, channels_last, manifest


def build_training_task(cfg: ExperimentConfig, net: nn.Module, device: torch.device) -> Task:
    """The configured task on ``net`` with the trained models it requires (a distillation
    teacher) loaded from their runs' checkpoints, frozen, on ``device``."""
    models = {}
    for keyword, ref in TASKS.get(cfg.task.name).required_models(cfg.task).items():
        path = run_checkpoint(ref.run, ref.checkpoint, what=f"task.{keyword}.run")
        loaded = load_trained_model(path, device)
        models[keyword] = TrainedModel(loaded.model.requires_grad_(False), loaded.output_kind,
                                       str(path))
    return build_task(net, cfg.task, **models)


def _train(cfg, config_dict, store, run_id, run_dir: Path, device, dist, resume_state,
           extra_callbacks, progress) -> RunResult:
    precision = resolve_precision(cfg.train.precision, device)
    model, loaders, channels_last, manifest = build_model_and_data(cfg, device, dist)
    bundle = loaders.bundle
    if dist.is_main and resume_state is None:
        save_config(cfg, run_dir / "config.yaml")
        meta = collect_meta(run_id=run_id, seed=cfg.train.seed, device=str(device),
                            precision=precision.name, channels_last=channels_last,
                            world_size=dist.world_size, dataset_source=bundle.source,
                            train_batches_per_epoch=len(loaders.train),
                            val_is_test=loaders.val_is_test, **manifest)
        (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))

    net: nn.Module = torch.compile(model) if cfg.train.compile else model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None)
    task = build_training_task(cfg, net, device)
    optimizers = build_phase_optimizers(task, cfg.optim)
    steps_per_epoch = math.ceil(len(loaders.train) / cfg.train.accumulate_steps)
    schedulers = {name: build_schedule(opt, cfg.schedule, epochs=cfg.train.epochs,
                                       steps_per_epoch=steps_per_epoch)
                  for name, opt in optimizers.items()}

    cbs: list[Callback] = []
    if cfg.callbacks.ema.enabled:
        cbs.append(EMA(cfg.callbacks.ema.decay, cfg.callbacks.ema.every_steps))
    es = cfg.callbacks.early_stopping
    if es.enabled:
        cbs.append(EarlyStopping(*resolve_monitor(es.monitor, es.mode, task.monitor),
                                 es.patience, es.min_delta, es.restore_best))
    cbs.append(MetricLogger(run_dir / "metrics.jsonl", cfg.train.log_every_steps,
                            run_dir / "tensorboard" if cfg.callbacks.tensorboard else None))
    ck = cfg.callbacks.checkpoint
    if ck.enabled:
        cbs.append(ModelCheckpoint(run_dir / "checkpoints", {"config": config_dict, **manifest},
                                   *resolve_monitor(ck.monitor, ck.mode, task.monitor),
                                   ck.save_best, ck.keep_last_k))
    show = cfg.callbacks.progress if progress is None else progress
    if show:
        cbs.append(ProgressBar())
    cbs.extend(extra_callbacks)
    if cfg.diagnostics.enabled:
        from archlab.analysis.diagnostics import Diagnostics

        cbs.append(Diagnostics(cfg.diagnostics, run_dir))

    penalty = build_penalty(model, cfg, num_train=loaders.train.num_examples)
    trainer = Trainer(task, optimizers, schedulers, train_loader=loaders.train,
                      val_loader=loaders.val, cfg=cfg.train, precision=precision, callbacks=cbs,
                      dist=dist, model=model, penalty=penalty,
                      plateau_monitor=cfg.schedule.plateau_monitor)
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        trainer.load_state_dict({**resume_state["trainer"], "model": resume_state["model"]})

    start = time.perf_counter()
    metrics = dict(trainer.fit())
    if trainer.failure is None:
        metrics.update(trainer.evaluate(loaders.test, prefix="test"))
    metrics.update(train_time_s=round(trainer.train_time_s, 3), epochs=trainer.epoch,
                   wall_time_s=round(time.perf_counter() - start, 3))
    status = "failed" if trainer.failure else "completed"
    if dist.is_main:
        store.update(run_id, status=status, metrics=metrics, error=trainer.failure)
    barrier(dist)
    with trainer.evaluation_weights():
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(final)
    broadcast_buffers(model, dist)
    return RunResult(run_id, run_dir, status, metrics, trainer.failure, model)


def build_penalty(model: nn.Module, cfg: ExperimentConfig, num_train: int):
    """The loss-side terms the config asks for, as one function (None when there are none):
    L1 / L2 penalties and, for variational dropout, the KL / N_train of the ELBO."""
    terms = []
    if cfg.optim.l1 or cfg.optim.l2_penalty:
        terms.append(lambda: regularization_penalty(model, l1=cfg.optim.l1,
                                                    l2=cfg.optim.l2_penalty))
    if cfg.model.dropout == "variational":
        terms.append(lambda: variational_kl(model) / num_train)
    if not terms:
        return None
    return lambda: sum(term() for term in terms)
