"""Several models and trained runs side by side: a cost/accuracy table and a Pareto plot.

A *run* contributes its test accuracy (the run store's ``test.acc``) and its model, rebuilt from
the run's manifest (model spec and input size, saved with the run); a bare
*model name* contributes costs only. The Pareto frontier is the set of runs no other run beats
on both axes at once: lower cost (latency or FLOPs) and higher accuracy.

Usage::

    run = load_run_target("runs/cifar/20250101-120000-abc123")  # archlab.runs.evaluation
    reports = compare(["resnet18", run], batch_sizes=[1])
    print(comparison_table(reports))
    plot_pareto(reports, "pareto.png")
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from torch import nn


@dataclass(frozen=True)
class RunTarget:
    run_id: str
    model_name: str
    model: nn.Module  # freshly built from the run's config (architecture, not trained weights)
    input_size: tuple[int, ...]
    accuracy: float | None  # the store's test.acc; None for a run without one (failed, running)


def compare(targets: Sequence[str | RunTarget], **options: Any):
    """One :class:`ProfileReport` per target: a registered model name or a :class:`RunTarget`
    (``archlab.runs.evaluation.load_run_target`` makes one from a run directory or id).
    ``options`` are ``ProfileConfig`` fields shared by all
    (``model_options`` only apply to model names); a run's own input size is used unless
    ``input_size`` is given."""
    from archlab.models import MODELS
    from archlab.profiling import profile

    reports = []
    for target in targets:
        if isinstance(target, str) and target in MODELS:
            reports.append(profile(target, **options))
            continue
        if not isinstance(target, RunTarget):
            raise ValueError(f"compare: {target!r} is no registered model; pass runs as "
                             f"RunTarget (archlab.runs.evaluation.load_run_target)")
        run = target
        run_options = dict(options)
        run_options.pop("model_options", None)  # for model names; a run's model is built already
        if run_options.get("input_size") is None:
            run_options["input_size"] = list(run.input_size)
        report = profile(run.model, target=run.run_id, accuracy=run.accuracy, **run_options)
        report.model = run.model_name
        reports.append(report)
    return reports


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, by increasing cost: no other point has cost <= and
    score >= with one of them strict. Equal points are all kept."""
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores differ in length: {len(costs)} vs {len(scores)}")
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i]))
    front: list[int] = []
    for i in order:
        if not front or scores[i] > scores[front[-1]]:
            front.append(i)
        elif scores[i] == scores[front[-1]] and costs[i] == costs[front[-1]]:
            front.append(i)
    return front


def _latency_ms(report) -> float | None:
    return report.latency[0].median_ms if report.latency else None


def comparison_table(reports: Sequence) -> str:
    """Accuracy, latency (first batch size), params and FLOPs per target; Pareto-optimal runs
    (on latency when measured, else FLOPs) are marked with ``*``."""
    from archlab.profiling.report import human, text_table

    runs = [i for i, r in enumerate(reports) if r.accuracy is not None]
    use_latency = all(_latency_ms(reports[i]) is not None for i in runs)
    costs = [_latency_ms(reports[i]) if use_latency else reports[i].flops for i in runs]
    front = {runs[j] for j in pareto_front(costs, [reports[i].accuracy for i in runs])}
    batch = reports[0].latency[0].batch_size if reports and reports[0].latency else None
    header = ["", "target", "model", "test.acc", "params", "FLOPs",
              f"median ms (batch {batch})" if batch else "median ms", "samples/s"]
    rows = []
    for i, r in enumerate(reports):
        lat = r.latency[0] if r.latency else None
        rows.append(["*" if i in front else "", r.target, r.model,
                     f"{r.accuracy:.4f}" if r.accuracy is not None else "-", human(r.params),
                     human(r.flops), f"{lat.median_ms:.2f}" if lat else "-",
                     f"{lat.samples_per_s:.1f}" if lat else "-"])
    note = (f"\n* Pareto-optimal: no other run is both {'faster' if use_latency else 'cheaper'} "
            "and more accurate" if front else "")
    return text_table(header, rows, right={3, 4, 5, 6, 7}) + note


def plot_pareto(reports: Sequence, path: str | Path) -> Path:
    """PNG of test accuracy vs latency and vs FLOPs for the reports that have an accuracy (runs),
    the frontier highlighted and joined, every point labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    points = [r for r in reports if r.accuracy is not None]
    if not points:
        raise ValueError("a Pareto plot needs at least one run with a test accuracy; "
                         "model names alone have none")
    panels = [("FLOPs per sample", [float(r.flops) for r in points])]
    if all(r.latency for r in points):
        batch = points[0].latency[0].batch_size
        panels.insert(0, (f"median latency (ms, batch {batch}, {points[0].device})",
                          [r.latency[0].median_ms for r in points]))
    accs = [r.accuracy for r in points]
    labels: dict[tuple[float, float], list[str]] = {}  # identical points share one label
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5.5), squeeze=False)
    for ax, (xlabel, costs) in zip(axes[0], panels):
        front = pareto_front(costs, accs)
        others = [i for i in range(len(points)) if i not in front]
        ax.scatter([costs[i] for i in others], [accs[i] for i in others], color="tab:gray",
                   label="dominated", zorder=2)
        # the frontier as a staircase: each step holds the best accuracy up to that cost
        ax.plot([costs[i] for i in front], [accs[i] for i in front], "-o", color="tab:red",
                drawstyle="steps-post", markersize=8, label="Pareto frontier", zorder=3)
        labels.clear()
        for i, r in enumerate(points):
            text = f"{r.model} {r.target}" if r.target != r.model else r.model
            labels.setdefault((costs[i], accs[i]), []).append(text)
        log_x = min(costs) > 0 and max(costs) / min(costs) > 20  # spans orders of magnitude
        scale = math.log if log_x else float
        low, high = scale(min(costs)), scale(max(costs))
        for (x, y), texts in labels.items():
            # Labels of points in the right half grow leftwards so they stay inside the axes.
            right = high > low and (scale(x) - low) / (high - low) > 0.5
            ax.annotate("\n".join(texts), (x, y), textcoords="offset points",
                        xytext=(-6, 6) if right else (6, 6), ha="right" if right else "left",
                        fontsize=7)
        ax.margins(x=0.2, y=0.1)
        if xlabel.startswith("FLOPs"):
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 20M, 1.5G
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy")
        ax.set_title(f"accuracy vs {xlabel.split(' (')[0]}")
        ax.grid(True, alpha=0.3)
        # below the axes: inside, it covers the labels of the best (top) points
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.suptitle(f"Pareto frontier of {len(points)} run(s): higher and further left is better")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
