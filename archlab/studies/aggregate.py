"""Aggregate a study from its files: summary per configuration and metric, pairwise tests,
learning curves with bands, epochs/time to reach targets.

Everything is read from the study directory (``study.yaml``, ``trials.json``) and the runs it
points to (final metrics from the run store's index, per-epoch records from each run's
``metrics.jsonl``), so ``archlab study report DIR`` re-aggregates without training::

    results = aggregate_study("runs/studies/activations")
    results.summary[0]  # SummaryRow(group="relu", metric="val.acc", n=3, mean=..., ...)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archlab.runs.store import RunNotFoundError, RunStore, read_metrics
from archlab.studies.runner import RESOLVED, read_ledger
from archlab.studies.spec import StudyConfig, build_study
from archlab.studies.stats import bootstrap_diff_ci, holm_adjust, summarize, welch_t_test


@dataclass
class TrialResult:
    key: str
    group: str
    seed: int
    status: str
    run_id: str | None
    run_dir: Path | None
    error: str | None
    metrics: dict[str, Any]
    """Final metrics from the run store (train/val at the last epoch, test, times)."""
    history: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """Epoch-end records of metrics.jsonl, in epoch order."""


@dataclass
class SummaryRow:
    group: str
    metric: str
    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    min: float
    max: float


@dataclass
class PairRow:
    group: str
    reference: str
    metric: str
    n: int
    n_ref: int
    diff: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float
    p_holm: float
    hedges_g: float
    boot_low: float = math.nan
    boot_high: float = math.nan


@dataclass
class CurveBand:
    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n: list[int]


@dataclass
class TargetRow:
    group: str
    metric: str
    target: float
    reached: int
    n: int
    epochs: SummaryRow | None
    time_s: SummaryRow | None


@dataclass
class StudyResults:
    study: StudyConfig
    study_dir: Path
    quick: bool
    command: list[str]
    groups: list[str]
    trials: list[TrialResult]
    summary: list[SummaryRow]
    pairwise: list[PairRow]
    curves: dict[str, dict[str, CurveBand]]
    targets: list[TargetRow]

    def completed(self, group: str | None = None) -> list[TrialResult]:
        return [t for t in self.trials
                if t.status == "completed" and (group is None or t.group == group)]

    def values(self, group: str, metric: str) -> list[float]:
        """The metric's final value of every completed seed of ``group`` (finite ones)."""
        out = []
        for t in self.completed(group):
            v = t.metrics.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                out.append(float(v))
        return out

    def row(self, group: str, metric: str) -> SummaryRow | None:
        return next((r for r in self.summary if r.group == group and r.metric == metric), None)


def lower_is_better(metric: str) -> bool:
    """Losses, error rates and times improve downwards; accuracies and scores upwards."""
    name = metric.lower()
    return "loss" in name or "err" in name or name.endswith("_s") or "time" in name


def _summary_row(group: str, metric: str, values: list[float], confidence: float) -> SummaryRow:
    return SummaryRow(group, metric, **summarize(values, confidence).as_dict())


def epoch_history(run_dir: Path) -> list[dict[str, Any]]:
    """The last record of every epoch that carries validation metrics (MetricLogger writes one
    per epoch at validation end; the per-step records only carry ``train.loss_step``)."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for record in read_metrics(run_dir):
        if "epoch" in record and any(k.startswith("val.") for k in record):
            by_epoch[int(record["epoch"])] = record
    return [by_epoch[e] for e in sorted(by_epoch)]


def load_trials(study_dir: Path, ledger: dict, store: RunStore | None) -> list[TrialResult]:
    trials = []
    for key, entry in ledger.get("trials", {}).items():
        run_dir = Path(entry["run_dir"]) if entry.get("run_dir") else None
        metrics: dict[str, Any] = {}
        status = entry.get("status", "queued")
        if entry.get("run_id") and store is not None and status == "completed":
            try:
                record = store.get(entry["run_id"])
                metrics, run_dir = record.metrics, record.path
            except RunNotFoundError:
                status = "missing"
        history = epoch_history(run_dir) if run_dir is not None and run_dir.is_dir() else []
        trials.append(TrialResult(key, entry["group"], entry["seed"], status, entry.get("run_id"),
                                  run_dir, entry.get("error"), metrics, history))
    return trials


def aggregate_study(study_dir: str | Path) -> StudyResults:
    study_dir = Path(study_dir)
    resolved_path = study_dir / RESOLVED
    if not resolved_path.is_file():
        raise FileNotFoundError(f"{study_dir} is not a study directory (no {RESOLVED}); run "
                                f"`archlab study run STUDY.yaml` first")
    resolved = yaml.safe_load(resolved_path.read_text())
    study = build_study(resolved["study"], str(resolved_path))
    ledger = read_ledger(study_dir)
    runs_dir = Path(ledger.get("runs_dir") or resolved["runs_dir"])
    store = RunStore(runs_dir) if (runs_dir / "index.sqlite").exists() else None
    trials = load_trials(study_dir, ledger, store)
    groups = list(dict.fromkeys(t["group"] for t in resolved["trials"]))
    results = StudyResults(study, study_dir, bool(resolved.get("quick")),
                           list(resolved.get("command") or []), groups, trials, [], [], {}, [])
    spec = study.report
    results.summary = [_summary_row(g, m, results.values(g, m), spec.confidence)
                       for g in groups for m in spec.metrics]
    results.pairwise = pairwise(results)
    results.curves = {m: {g: curve_band(results, g, m) for g in groups} for m in spec.curves}
    results.targets = [target_row(results, g, m, target)
                       for m, targets in spec.targets.items() for target in targets
                       for g in groups]
    return results


def comparison_pairs(results: StudyResults) -> list[tuple[str, str]]:
    spec, groups = results.study.report, results.groups
    if spec.pairwise == "none":
        return []
    if spec.pairwise == "baseline" and spec.baseline is not None:
        return [(g, spec.baseline) for g in groups if g != spec.baseline]
    return [(b, a) for a, b in itertools.combinations(groups, 2)]


def pairwise(results: StudyResults) -> list[PairRow]:
    """Welch's t-test of every pair (group - reference) per metric; Holm's correction within
    each metric's family of comparisons."""
    spec, rows = results.study.report, []
    for metric in spec.metrics:
        family = []
        for group, reference in comparison_pairs(results):
            a, b = results.values(group, metric), results.values(reference, metric)
            c = welch_t_test(a, b, spec.confidence)
            row = PairRow(group, reference, metric, c.n_a, c.n_b, c.diff, c.ci_low, c.ci_high,
                          c.t, c.df, c.p_value, math.nan, c.hedges_g)
            if spec.bootstrap_resamples and a and b:
                row.boot_low, row.boot_high = bootstrap_diff_ci(
                    a, b, resamples=spec.bootstrap_resamples, seed=spec.bootstrap_seed,
                    confidence=spec.confidence)
            family.append(row)
        for row, p in zip(family, holm_adjust([r.p_value for r in family])):
            row.p_holm = p
        rows += family
    return rows


def curve_band(results: StudyResults, group: str, metric: str) -> CurveBand:
    """Mean over seeds per epoch and the band (± std or the t interval, per report.band);
    epochs some seeds never reached (early stopping, a failed run) use the seeds that did."""
    per_epoch: dict[int, list[float]] = {}
    for trial in results.completed(group):
        for record in trial.history:
            v = record.get(metric)
            if isinstance(v, (int, float)) and math.isfinite(v):
                per_epoch.setdefault(int(record["epoch"]), []).append(float(v))
    band = CurveBand([], [], [], [], [])
    for epoch in sorted(per_epoch):
        s = summarize(per_epoch[epoch], results.study.report.confidence)
        if results.study.report.band == "std":
            low, high = s.mean - s.std, s.mean + s.std
        else:
            low, high = s.ci_low, s.ci_high
        if s.n < 2:
            low = high = s.mean
        band.epochs.append(epoch)
        band.mean.append(s.mean)
        band.low.append(low)
        band.high.append(high)
        band.n.append(s.n)
    return band


def first_reach(history: list[dict[str, Any]], metric: str,
                target: float) -> tuple[int, float | None] | None:
    """(epoch, cumulative train_time_s) at which ``metric`` first reaches ``target``."""
    below = lower_is_better(metric)
    for record in history:
        v = record.get(metric)
        if isinstance(v, (int, float)) and (v <= target if below else v >= target):
            return int(record["epoch"]), record.get("train_time_s")
    return None


def target_row(results: StudyResults, group: str, metric: str, target: float) -> TargetRow:
    runs = results.completed(group)
    hits = [h for h in (first_reach(t.history, metric, target) for t in runs) if h is not None]
    conf = results.study.report.confidence
    epochs = _summary_row(group, metric, [h[0] for h in hits], conf) if hits else None
    times = [h[1] for h in hits if h[1] is not None]
    time_s = _summary_row(group, metric, times, conf) if times else None
    return TargetRow(group, metric, target, len(hits), len(runs), epochs, time_s)


def results_to_dict(results: StudyResults) -> dict:
    """Every number of the study as plain JSON types (nan -> None)."""
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return clean({
        "study": results.study.name, "quick": results.quick, "command": results.command,
        "groups": results.groups,
        "trials": [{k: v for k, v in asdict(t).items() if k != "history"}
                   for t in results.trials],
        "summary": [asdict(r) for r in results.summary],
        "pairwise": [asdict(r) for r in results.pairwise],
        "curves": {m: {g: asdict(b) for g, b in bands.items()}
                   for m, bands in results.curves.items()},
        "targets": [asdict(r) for r in results.targets],
    })
