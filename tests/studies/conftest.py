"""A study directory with known numbers, built without training: real trial expansion and a
real run store, but each run's final metrics and metrics.jsonl are written by hand."""

from __future__ import annotations

import json

import pytest

from archlab.runs.store import RunStore
from archlab.studies.runner import study_dir_for, write_ledger, _write_resolved
from archlab.studies.spec import build_study
from archlab.studies.trials import expand_trials

TINY_BASE = {"data.name": "digits", "model.name": "cnn_tiny", "model.options": {"img_size": 8},
             "train.epochs": 3, "callbacks.progress": False}

#: Final val.acc per (configuration, seed); test.acc = val.acc - 0.01.
FINAL = {"relu": [0.90, 0.92, 0.91], "tanh": [0.85, 0.88, 0.86], "gelu": [0.93, 0.90, 0.94]}
#: grad_flow's first/last layer gradient ratio per configuration (diagnostics.jsonl).
DEPTH_RATIO = {"relu": 0.5, "tanh": 1e-3, "gelu": 0.9}
#: val.acc per epoch is final * (0.8, 0.95, 1.0).
EPOCH_SCALE = (0.8, 0.95, 1.0)


def fake_study_tree(**report):
    return {"name": "fake", "description": "Known numbers for report tests.",
            "overrides": TINY_BASE,
            "variants": {g: {"model.options.act": g} for g in FINAL},
            "seeds": [0, 1, 2],
            "report": {"metrics": ["val.acc", "test.acc"], "curves": ["val.acc"],
                       "targets": {"val.acc": [0.8, 0.9]}, "baseline": "relu", "band": "ci",
                       "bootstrap_resamples": 500, **report}}


def build_fake_study(runs_dir, failed_key: str | None = "tanh seed=2", **report):
    """Writes study.yaml, trials.json and one store run per trial; returns the study dir."""
    study = build_study(fake_study_tree(**report))
    trials = expand_trials(study)
    store = RunStore(runs_dir)
    study_dir = study_dir_for(runs_dir, study.name)
    study_dir.mkdir(parents=True)
    _write_resolved(study_dir, study, trials, False, runs_dir.resolve(), None,
                    ["archlab", "study", "run", "fake.yaml"], 1)
    ledger = {"study": study.name, "quick": False, "runs_dir": str(runs_dir.resolve()),
              "trials": {}}
    for trial in trials:
        record = store.create_run(study.name, seed=trial.seed)
        acc = FINAL[trial.group][trial.seed]
        failed = trial.key == failed_key
        with (record.path / "metrics.jsonl").open("w") as f:
            for epoch, scale in enumerate(EPOCH_SCALE, 1):
                f.write(json.dumps({"step": 10 * epoch, "epoch": epoch, "train.loss_step": 1.0})
                        + "\n")
                f.write(json.dumps({"step": 10 * epoch, "epoch": epoch, "val.acc": acc * scale,
                                    "train_time_s": 2.0 * epoch}) + "\n")
        with (record.path / "diagnostics.jsonl").open("w") as f:
            for step in (1, 20):
                layers = {f"blocks.{i}.0.weight": {"norm": DEPTH_RATIO[trial.group] ** (1 - i / 2),
                                                   "mean_abs": 1e-3} for i in range(3)}
                layers["blocks.0.2.weight"] = {"norm": 0.5, "mean_abs": 0.5}  # a PReLU slope
                f.write(json.dumps({"step": step, "epoch": 0, "kind": "grad_flow",
                                    "global_norm": 1.0, "warnings": [], "layers": layers,
                                    "depth_ratio": DEPTH_RATIO[trial.group]}) + "\n")
            if trial.group == "relu":
                dead = {"blocks.0.2": {"dead_fraction": 0.25, "dead": 4, "units": 16,
                                       "never_positive": 4, "never_positive_fraction": 0.25,
                                       "zero_region": True},
                        "blocks.1.2": {"dead_fraction": 0.0, "dead": 0, "units": 16,
                                       "never_positive": 0, "never_positive_fraction": 0.0,
                                       "zero_region": True}}
            elif trial.group == "gelu":  # cannot die; 2 of 16 units stayed negative
                dead = {"blocks.0.2": {"dead_fraction": 0.0, "dead": 0, "units": 16,
                                       "never_positive": 2, "never_positive_fraction": 0.125,
                                       "zero_region": False}}
            else:
                dead = None
            if dead is not None:
                f.write(json.dumps({"step": 30, "epoch": 3, "kind": "dead_units",
                                    "layers": dead}) + "\n")
        status = "failed" if failed else "completed"
        store.update(record.run_id, status=status,
                     metrics={"val.acc": acc, "test.acc": acc - 0.01},
                     error="non-finite loss" if failed else None)
        ledger["trials"][trial.key] = {
            "group": trial.group, "variant": trial.variant, "point": trial.point,
            "seed": trial.seed, "fingerprint": trial.fingerprint, "status": status,
            "run_id": record.run_id, "run_dir": str(record.path),
            "error": "non-finite loss" if failed else None}
    write_ledger(study_dir, ledger)
    return study_dir


@pytest.fixture
def fake_study_dir(tmp_path):
    return build_fake_study(tmp_path / "runs")
