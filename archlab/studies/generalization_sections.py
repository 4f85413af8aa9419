"""``generalization_gap``: how far training accuracy/loss runs ahead of validation, per
configuration, from the trials' learning curves (``metrics.jsonl``).

At the last epoch of each seed: accuracy gap = train.acc − val.acc and loss gap = val.loss −
train.loss (both positive when the model fits the training set better than held-out data),
then mean ± std over the configuration's completed seeds. A figure draws the accuracy gap per
epoch. Caveat printed with the numbers: the trainer's train.acc/train.loss are running means
over the epoch in train mode, so dropout, mixup and cutmix lower them by construction and a
small or negative gap for those variants partly measures the perturbation, not only
generalization; likewise label smoothing and soft (mixed) targets raise the training loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from archlab.studies.aggregate import StudyResults
from archlab.studies.sections import (REPORT_SECTIONS, ReportContext, Section, Table, Text, fmt,
                                      integer_ticks)

GAP_METRICS = ("train.acc", "val.acc", "train.loss", "val.loss")


@dataclass
class GapRow:
    group: str
    n: int
    """Seeds whose last epoch has all four metrics."""
    final: dict[str, float]
    """Each of GAP_METRICS at the last epoch, mean over seeds."""
    acc_gap: float
    acc_gap_std: float
    loss_gap: float
    loss_gap_std: float


def _std(values: list[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def generalization_gaps(results: StudyResults) -> list[GapRow]:
    """One row per configuration with at least one seed whose curves have the four metrics."""
    rows = []
    for group in results.groups:
        finals = []
        for trial in results.completed(group):
            last = next((h for h in reversed(trial.history)
                         if all(k in h for k in GAP_METRICS)), None)
            if last is not None:
                finals.append({k: float(last[k]) for k in GAP_METRICS})
        if not finals:
            continue
        acc = [f["train.acc"] - f["val.acc"] for f in finals]
        loss = [f["val.loss"] - f["train.loss"] for f in finals]
        rows.append(GapRow(group, len(finals),
                           {k: float(np.mean([f[k] for f in finals])) for k in GAP_METRICS},
                           float(np.mean(acc)), _std(acc), float(np.mean(loss)), _std(loss)))
    return rows


def gap_curve(results: StudyResults, group: str) -> tuple[list[int], list[float]]:
    """(epochs, mean over seeds of train.acc − val.acc) for the epochs that have both."""
    per_epoch: dict[int, list[float]] = {}
    for trial in results.completed(group):
        for h in trial.history:
            if "train.acc" in h and "val.acc" in h:
                per_epoch.setdefault(int(h["epoch"]), []).append(h["train.acc"] - h["val.acc"])
    epochs = sorted(per_epoch)
    return epochs, [float(np.mean(per_epoch[e])) for e in epochs]


@REPORT_SECTIONS.register("generalization_gap")
def generalization_gap_section(ctx: ReportContext) -> Section | None:
    rows = generalization_gaps(ctx.results)
    if not rows:
        return None
    table = Table(
        ["configuration", "seeds", "train acc", "val acc", "acc gap (train − val)",
         "train loss", "val loss", "loss gap (val − train)"],
        [[r.group, str(r.n), fmt(r.final["train.acc"]), fmt(r.final["val.acc"]),
          f"{fmt(r.acc_gap)} ± {fmt(r.acc_gap_std)}", fmt(r.final["train.loss"]),
          fmt(r.final["val.loss"]), f"{fmt(r.loss_gap)} ± {fmt(r.loss_gap_std)}"] for r in rows],
        "Last epoch, mean over seeds (gaps: mean ± std over seeds).")
    fig, axes = ctx.new_figure()
    ax = axes[0][0]
    for i, group in enumerate(ctx.results.groups):
        epochs, gaps = gap_curve(ctx.results, group)
        if epochs:
            ax.plot(epochs, gaps, marker="o", ms=3, color=f"C{i % 10}", label=group)
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.xaxis.set_major_locator(integer_ticks())  # epochs are whole
    ax.set_xlabel("epoch")
    ax.set_ylabel("train.acc − val.acc")
    ax.set_title("Generalization gap per epoch (mean over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    figure = ctx.save(fig, "generalization_gap", "Train minus validation accuracy per epoch.")
    smallest = min(rows, key=lambda r: r.acc_gap)
    largest = max(rows, key=lambda r: r.acc_gap)
    text = (f"Largest accuracy gap: {largest.group} ({fmt(largest.acc_gap)}); smallest: "
            f"{smallest.group} ({fmt(smallest.acc_gap)}). Train metrics are running means over "
            f"each epoch in train mode (dropout active, mixup/cutmix inputs), so they understate "
            f"the fit of the final weights; a negative gap usually means exactly that. The train "
            f"loss is the training objective: with label smoothing or mixed soft targets it has "
            f"a higher floor than the validation cross-entropy, so compare loss gaps only "
            f"between configurations with the same loss.")
    return Section("Generalization gap", [table, figure, Text(text)])
