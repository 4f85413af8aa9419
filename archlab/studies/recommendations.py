"""The ``recommendations`` report section: best and worst configuration on each measured
criterion, and which configurations the seeds cannot tell apart from the best.

Nothing here is written in advance: every cell comes from the aggregate (final metric, its std
over seeds, epochs to the first target, train time) and, where the trials recorded
diagnostics, from gradient flow and dead units. A criterion without data is left out.
"""

from __future__ import annotations

import math
from typing import Callable

from archlab.studies.aggregate import StudyResults, lower_is_better
from archlab.studies.sections import REPORT_SECTIONS, ReportContext, Section, Table, Text, fmt
from archlab.studies.stats import welch_t_test

#: Significance level for "cannot be told apart from the best".
ALPHA = 0.05


def primary_metric(results: StudyResults) -> str | None:
    """The first reported metric where higher is better (an accuracy), else the first one."""
    metrics = results.study.report.metrics
    return next((m for m in metrics if not lower_is_better(m)), metrics[0] if metrics else None)


def _rank(scores: dict[str, float], lower_better: bool) -> tuple[str, str] | None:
    finite = {g: v for g, v in scores.items() if v is not None and math.isfinite(v)}
    if len(finite) < 2:
        return None
    order = sorted(finite, key=finite.get, reverse=not lower_better)
    return order[0], order[-1]


def contenders(results: StudyResults, metric: str | None) -> tuple[str | None, list[str],
                                                                    list[str]]:
    """(best configuration by mean ``metric``, those Welch's test at ALPHA cannot tell apart
    from it, those significantly worse)."""
    if metric is None:
        return None, [], []
    means = {g: results.row(metric=metric, group=g).mean for g in results.groups
             if results.row(g, metric)}
    ranked = _rank(means, lower_is_better(metric))
    if ranked is None:
        return None, [], []
    best, ties, worse = ranked[0], [], []
    for g in results.groups:
        if g == best:
            continue
        c = welch_t_test(results.values(g, metric), results.values(best, metric))
        (ties if math.isnan(c.p_value) or c.p_value >= ALPHA else worse).append(g)
    return best, ties, worse


def criteria(ctx: ReportContext) -> list[tuple[str, dict[str, float], bool, Callable]]:
    """(criterion, configuration -> score, lower is better, formatter) for each measurable
    criterion."""
    r, out = ctx.results, []
    metric = primary_metric(r)
    if metric is not None:
        means = {g: r.row(g, metric).mean for g in r.groups if r.row(g, metric)}
        out.append((f"final {metric} (mean over seeds)", means, lower_is_better(metric), fmt))
        # Stability only among the contenders (the best and those the seeds cannot tell apart
        # from it): a network stuck at chance level is perfectly "stable".
        best, ties, _ = contenders(r, metric)
        stds = {g: r.row(g, metric).std for g in [best, *ties] if g and r.row(g, metric)}
        out.append((f"stability: std of {metric} over seeds (among the contenders)", stds, True,
                    fmt))
    if r.targets:
        first = r.targets[0]
        rows = [t for t in r.targets if t.metric == first.metric and t.target == first.target]
        # Only configurations where every seed reached the target compete on speed.
        epochs = {t.group: t.epochs.mean for t in rows if t.epochs and t.reached == t.n}
        out.append((f"epochs to {first.metric} {'≤' if lower_is_better(first.metric) else '≥'} "
                    f"{fmt(first.target)} (all seeds reaching it)", epochs, True,
                    lambda v: fmt(v, 1)))
    if "train_time_s" in r.study.report.metrics:
        times = {g: r.row(g, "train_time_s").mean for g in r.groups}
        out.append(("train time s", times, True, lambda v: fmt(v, 1)))
    from archlab.studies.diagnostic_sections import dead_summary, group_records

    flows = group_records(ctx, "grad_flow")
    if flows:
        # |log10(first/last layer gradient ratio)| at initialization: 0 = gradient reaches the
        # input layer undiminished; 3 = a thousandfold smaller there.
        health = {}
        for g, seeds in flows.items():
            ratios = [s[0]["depth_ratio"] for s in seeds if s[0].get("depth_ratio")]
            if ratios:
                health[g] = sum(abs(math.log10(x)) for x in ratios if x > 0) / len(ratios)
        out.append(("gradient flow: |log10 first/last layer grad ratio| at init", health, True,
                    lambda v: fmt(v, 2)))
    never = dead_summary(ctx, "never_positive")  # comparable across every rectifier
    if never:
        out.append(("never-positive units (rectifiers; = dead for ReLU)", never, True,
                    lambda v: f"{100 * v:.1f}%"))
    return out


@REPORT_SECTIONS.register("recommendations")
def recommendations_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    rows = []
    for name, scores, lower_better, show in criteria(ctx):
        ranked = _rank(scores, lower_better)
        if ranked is None:
            continue
        best, worst = ranked
        rows.append([name, best, show(scores[best]), worst, show(scores[worst])])
    if not rows:
        return None
    blocks = [Table(["criterion", "best", "value", "worst", "value"], rows,
                    "Every cell is measured in this study.")]
    metric = primary_metric(r)
    best, ties, worse = contenders(r, metric)
    if best is not None:
        row = r.row(best, metric)
        text = (f"Highest {metric}: {best} ({fmt(row.mean)} ± {fmt(row.std)}, n={row.n}). "
                f"Not distinguishable from it by Welch's t-test at p < {ALPHA} with these seeds: "
                f"{', '.join(ties) or 'none'}. Significantly worse: {', '.join(worse) or 'none'}.")
        if r.quick:
            text += " (Quick mode: too few seeds and epochs to act on.)"
        blocks.append(Text(text))
    return Section("Recommendations", blocks)
