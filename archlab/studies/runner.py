"""run_study: every trial a normal run (``run_experiment``) in the shared run store, with a
resumable ledger.

The study directory ``<runs_dir>/studies/<name>`` (``<name>-quick`` with ``--quick``) holds

* ``study.yaml``  — the study as resolved: spec, mode, command, and each trial's overrides;
* ``trials.json`` — the ledger: trial key -> status, run_id, run_dir, error, config fingerprint.

Only this process writes the ledger (atomically, after every finished trial), so workers never
race on it. On a re-run a trial is skipped when its ledger entry is ``completed``, its config
fingerprint is unchanged and the store still has the run as completed; ``failed`` trials are
kept as results (a diverging learning rate is a finding) unless ``retry_failed``; trials left
``queued``/``running`` by a killed study are run again from scratch.

Workers: ``jobs > 1`` runs trials in a spawn-context process pool, each worker limited to
``max(1, cores // jobs)`` torch threads so the workers do not oversubscribe the cores.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Sequence

import yaml

from archlab.runs.store import RunNotFoundError, RunStore
from archlab.studies.spec import StudyConfig, study_to_dict
from archlab.studies.trials import Trial, expand_trials

LEDGER, RESOLVED = "trials.json", "study.yaml"


def study_dir_for(runs_dir: str | Path, name: str, quick: bool = False) -> Path:
    return Path(runs_dir) / "studies" / (f"{name}-quick" if quick else name)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class StudyOutcome:
    study_dir: Path
    ran: list[str]
    skipped: list[str]
    failed: list[str]
    interrupted: list[str]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def read_ledger(study_dir: str | Path) -> dict:
    path = Path(study_dir) / LEDGER
    if not path.exists():
        return {"trials": {}}
    return json.loads(path.read_text())


def write_ledger(study_dir: Path, ledger: dict) -> None:
    tmp = study_dir / (LEDGER + ".tmp")
    tmp.write_text(json.dumps(ledger, indent=2))
    os.replace(tmp, study_dir / LEDGER)  # atomic: a kill never leaves half a ledger


def _finished(entry: dict | None, trial: Trial, store: RunStore, retry_failed: bool) -> bool:
    if entry is None or entry.get("fingerprint") != trial.fingerprint:
        return False
    if entry.get("status") == "failed" and not retry_failed:
        return True
    if entry.get("status") != "completed" or not entry.get("run_id"):
        return False
    try:
        return store.get(entry["run_id"]).status == "completed"
    except RunNotFoundError:
        return False


def run_study(study: StudyConfig, *, runs_dir: str | Path = "runs", quick: bool = False,
              jobs: int = 1, study_file: str | Path | None = None,
              retry_failed: bool = False, command: list[str] | None = None,
              overrides: Sequence[str] = (), seeds: Sequence[int] | None = None,
              log: Callable[[str], None] | None = print) -> StudyOutcome:
    """Run (or resume) every trial; returns which ran, were skipped, failed or were cut off.
    Config errors are raised before any trial starts. ``overrides`` and ``seeds``: see
    :func:`~archlab.studies.trials.expand_trials` (changed settings change the trials'
    fingerprints, so finished trials with other settings are run again, not reused)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    log = log or (lambda message: None)
    trials = expand_trials(study, quick=quick, study_file=study_file, overrides=overrides,
                           seeds=seeds)
    runs_dir = Path(runs_dir).resolve()
    store = RunStore(runs_dir)
    study_dir = study_dir_for(runs_dir, study.name, quick)
    study_dir.mkdir(parents=True, exist_ok=True)
    _write_resolved(study_dir, study, trials, quick, runs_dir, study_file, command, jobs,
                    overrides=list(overrides), seeds=None if seeds is None else list(seeds))

    ledger = read_ledger(study_dir)
    entries: dict = ledger.setdefault("trials", {})
    ledger.update(study=study.name, quick=quick, runs_dir=str(runs_dir))
    todo, skipped = [], []
    for trial in trials:
        entry = entries.get(trial.key)
        if _finished(entry, trial, store, retry_failed):
            skipped.append(trial.key)
            continue
        if entry is not None and entry.get("status") in ("queued", "running"):
            log(f"[study] {trial.key}: interrupted earlier (run {entry.get('run_id')}); re-running")
        entries[trial.key] = {"group": trial.group, "variant": trial.variant,
                              "point": trial.point, "seed": trial.seed,
                              "fingerprint": trial.fingerprint, "status": "queued",
                              "run_id": None, "run_dir": None, "error": None,
                              "attempts": (entry or {}).get("attempts", 0) + 1}
        todo.append(trial)
    # Drop entries of trials the study no longer has (an axis value removed).
    for key in set(entries) - {t.key for t in trials}:
        del entries[key]
    write_ledger(study_dir, ledger)
    log(f"[study] {study.name}{' (quick)' if quick else ''}: {len(trials)} trials, "
        f"{len(skipped)} already done, {len(todo)} to run with {jobs} job(s) -> {study_dir}")

    ran, failed, interrupted = [], [], []

    def record(result: dict) -> None:
        entry = entries[result["key"]]
        entry.update({k: result[k] for k in ("status", "run_id", "run_dir", "error")},
                     finished=time.time(), traceback=result.get("traceback"))
        write_ledger(study_dir, ledger)
        (ran if result["status"] == "completed" else failed).append(result["key"])
        n = len(ran) + len(failed)
        summary = result["error"] if result["error"] else _headline(result["metrics"])
        log(f"[study] {n}/{len(todo)} {result['key']}: {result['status']} {summary}")

    payloads = [{"key": t.key, "config": t.config, "runs_dir": str(runs_dir)} for t in todo]
    if jobs == 1 or len(payloads) <= 1:
        for payload in payloads:
            entries[payload["key"]].update(status="running", started=time.time())
            write_ledger(study_dir, ledger)
            record(run_trial(payload))
    else:
        threads = max(1, available_cores() // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(run_trial, p): p["key"] for p in payloads}
            try:
                for future in as_completed(futures):
                    record(future.result())
            except BrokenProcessPool:
                # A worker died (killed, out of memory): its trial and the unstarted ones stay
                # 'queued' in the ledger, so the next `study run` runs them again.
                interrupted = [k for k in futures.values() if k not in ran and k not in failed]
                log(f"[study] a worker process died; {len(interrupted)} trial(s) left for the "
                    f"next run: {', '.join(interrupted)}")
    return StudyOutcome(study_dir, ran, skipped, failed, interrupted)


def run_trial(payload: dict) -> dict:
    """One trial, in this process or a worker: never raises for a failing run, so one bad
    configuration cannot stop the others. Returns plain data (it crosses processes)."""
    from archlab.runs.config import build_config
    from archlab.runs.experiment import run_experiment

    key = payload["key"]
    try:
        cfg = build_config(payload["config"], f"trial '{key}'")
        result = run_experiment(cfg, runs_dir=payload["runs_dir"], progress=False)
        result.model = None
        return {"key": key, "status": result.status, "run_id": result.run_id,
                "run_dir": str(result.run_dir), "error": result.error,
                "metrics": result.metrics}
    except Exception as e:
        return {"key": key, "status": "failed", "run_id": _failed_run_id(payload, e),
                "run_dir": None, "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(limit=-8), "metrics": {}}


def _failed_run_id(payload: dict, error: Exception) -> str | None:
    # run_experiment marks its run failed with this exact message before re-raising; find it
    # so the report can point at the run directory (None when it failed before creating one).
    message = f"{type(error).__name__}: {error}"
    experiment = payload["config"].get("experiment")
    for record in RunStore(payload["runs_dir"]).list(experiment, status="failed", limit=50):
        if record.error == message:
            return record.run_id
    return None


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _headline(metrics: dict) -> str:
    shown = [f"{k} {metrics[k]:.4f}" for k in ("val.acc", "test.acc") if k in metrics]
    if "train_time_s" in metrics:
        shown.append(f"train {metrics['train_time_s']:.1f}s")
    return "  ".join(shown)


def machine_info(jobs: int | None = None) -> dict:
    """Where the numbers come from: timings in a report only mean something with this."""
    import platform

    import torch

    info = {"host": platform.node(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": str(torch.__version__),
            "cores": available_cores(), "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if hasattr(os, "getloadavg"):
        info["load_1_5_15min"] = [round(v, 2) for v in os.getloadavg()]
    if jobs is not None:
        info["jobs"] = jobs
    return info


def _write_resolved(study_dir: Path, study: StudyConfig, trials: list[Trial], quick: bool,
                    runs_dir: Path, study_file, command, jobs: int,
                    overrides: list[str] | None = None, seeds: list[int] | None = None) -> None:
    resolved = {
        "study": study_to_dict(study),
        "study_file": str(Path(study_file).resolve()) if study_file else None,
        "quick": quick,
        # Settings from the command line, not the study file: the report names them.
        "command_overrides": overrides or [],
        "command_seeds": seeds,
        "runs_dir": str(runs_dir),
        "command": command if command is not None else [Path(sys.argv[0]).name, *sys.argv[1:]],
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(jobs),
        "trials": [{"key": t.key, "group": t.group, "seed": t.seed,
                    "overrides": list(t.overrides)} for t in trials],
    }
    (study_dir / RESOLVED).write_text(yaml.safe_dump(resolved, sort_keys=False))
