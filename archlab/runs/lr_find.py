"""An LR range test as a stored run: sweep, suggestions, plot in the run's artifacts."""

from __future__ import annotations

import json

from archlab.runs.config import ExperimentConfig, save_config
from archlab.runs.experiment import build_model_and_data, build_training_task
from archlab.train.device import resolve_device
from archlab.runs.provenance import collect_meta
from archlab.runs.store import RunRecord, RunStore
from archlab.train.lr_finder import LRFinderResult, find_lr
from archlab.train.optim import build_phase_optimizers


def run_lr_find(cfg: ExperimentConfig, *, runs_dir: str = "runs", start_lr: float = 1e-6,
                end_lr: float = 10.0, num_steps: int = 100) -> tuple[RunRecord, LRFinderResult]:
    """Sweep the lr exponentially over ``num_steps`` training steps of ``cfg``'s model and data;
    the model and optimizer are restored afterwards (the sweep leaves no trace on them)."""
    device = resolve_device(cfg.train.device)
    store = RunStore(runs_dir)
    record = store.create_run(f"{cfg.experiment}-lr-find", seed=cfg.train.seed,
                              model=cfg.model.name, dataset=cfg.data.name)
    try:
        model, loaders, _, _ = build_model_and_data(cfg, device)
        save_config(cfg, record.path / "config.yaml")
        meta = collect_meta(run_id=record.run_id, seed=cfg.train.seed, device=str(device),
                            kind="lr-find", start_lr=start_lr, end_lr=end_lr, num_steps=num_steps)
        (record.path / "meta.json").write_text(json.dumps(meta, indent=2))
        task = build_training_task(cfg, model, device)
        optimizers = build_phase_optimizers(task, cfg.optim)
        if len(optimizers) != 1:
            raise ValueError(f"lr-find sweeps one optimizer; task '{cfg.task.name}' has phases "
                             f"{list(optimizers)}")
        result = find_lr(task, next(iter(optimizers.values())), loaders.train,
                         start_lr=start_lr, end_lr=end_lr, num_steps=num_steps)
        result.plot(record.path / "artifacts" / "lr_find.png")
        (record.path / "artifacts" / "lr_find.json").write_text(json.dumps(
            {"lrs": result.lrs, "losses": result.losses, "smoothed": result.smoothed,
             "suggestion_steepest": result.suggestion_steepest,
             "suggestion_valley": result.suggestion_valley, "diverged": result.diverged}))
    except BaseException as e:
        store.update(record.run_id, status="failed", error=f"{type(e).__name__}: {e}")
        raise
    store.update(record.run_id, status="completed",
                 metrics={"lr_find.steepest": result.suggestion_steepest,
                          "lr_find.valley": result.suggestion_valley})
    return store.get(record.run_id), result
