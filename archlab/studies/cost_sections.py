"""Report sections about what each configuration costs, next to what it scores.

* ``cost``       — per configuration: parameters (sum of ``p.numel()``), forward FLOPs at batch 1
  (``torch.utils.flop_counter`` via :func:`archlab.models._factory.count_flops`), CPU latency
  median / p90 at batch 1 and 64 (:func:`archlab.profiling.latency.measure_latency`), training
  time per epoch from the runs; plus accuracy-vs-FLOPs and accuracy-vs-latency plots with the
  Pareto front (the configurations no other one beats on both axes);
* ``tradeoff``   — each configuration against ``report.baseline``: accuracy drop with the
  Welch interval of the pairwise comparison, FLOPs / latency / params ratios, and whether the
  efficiency goal "< 2 points accuracy drop for several-fold (>= 3x) fewer FLOPs" is met;
* ``epoch_time`` — training seconds per epoch (``train_time_s / epochs``) over seeds, relative
  to the baseline (SAM's two passes per step show here).

The model of a configuration is rebuilt from its first completed run's ``config.yaml``
(untrained weights: cost does not depend on them) at the data set's image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from archlab.profiling.latency import LatencyStats, measure_latency
from archlab.studies.aggregate import SummaryRow, StudyResults, lower_is_better
from archlab.studies.sections import (REPORT_SECTIONS, Block, ReportContext, Section, Table,
                                      Text, fmt)
from archlab.studies.stats import summarize

LATENCY_BATCHES = (1, 64)
#: The efficiency goal of the ``tradeoff`` section: at most this accuracy drop (absolute, a
#: fraction: 0.02 = 2 points) for at least this many times fewer FLOPs than the baseline.
MAX_ACCURACY_DROP = 0.02
MIN_FLOPS_REDUCTION = 3.0


@dataclass
class VariantCost:
    group: str
    params: int
    flops: int
    latency: dict[int, LatencyStats]
    """Batch size -> CPU forward latency (eval mode, inference_mode)."""
    epoch_time: SummaryRow | None
    """Seconds of training per epoch over the completed seeds."""


_MEASURED: dict[tuple[str, int], tuple[int, int, dict[int, LatencyStats]]] = {}


def build_run_model(run_dir: Path) -> tuple[torch.nn.Module, tuple[int, ...]]:
    """The run's model (untrained) and its input size, from the run's own manifest."""
    from archlab.runs.evaluation import run_architecture

    model, input_size, _ = run_architecture(run_dir)
    return model, input_size


def measure_model_cost(model: torch.nn.Module, input_size: tuple[int, ...], *,
                       batch_sizes=LATENCY_BATCHES, warmup: int = 3,
                       runs: int = 10) -> tuple[int, int, dict[int, LatencyStats]]:
    """(params, forward FLOPs at batch 1, latency per batch size) of ``model`` on the CPU."""
    from archlab.models._factory import count_flops

    model = model.cpu()
    params = sum(p.numel() for p in model.parameters())
    flops = count_flops(model, tuple(input_size))
    stats = measure_latency(model, tuple(input_size), batch_sizes, warmup=warmup, runs=runs)
    return params, flops, {s.batch_size: s for s in stats}


def epoch_time(results: StudyResults, group: str) -> SummaryRow | None:
    """Training seconds per epoch of each completed seed (``train_time_s / epochs``)."""
    values = []
    for t in results.completed(group):
        seconds, epochs = t.metrics.get("train_time_s"), t.metrics.get("epochs")
        if isinstance(seconds, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0:
            values.append(float(seconds) / float(epochs))
    if not values:
        return None
    s = summarize(values, results.study.report.confidence)
    return SummaryRow(group, "epoch_time_s", **s.as_dict())


def variant_costs(results: StudyResults) -> dict[str, VariantCost]:
    """Cost of every configuration with a completed run (measured once per run and process)."""
    out = {}
    for group in results.groups:
        run = next((t for t in results.completed(group) if t.run_dir is not None), None)
        if run is None:
            continue
        key = (str(run.run_dir), torch.get_num_threads())
        if key not in _MEASURED:
            model, input_size = build_run_model(Path(run.run_dir))
            _MEASURED[key] = measure_model_cost(model, input_size)
        params, flops, latency = _MEASURED[key]
        out[group] = VariantCost(group, params, flops, latency, epoch_time(results, group))
    return out


def accuracy_metric(results: StudyResults) -> str | None:
    """The score the cost is traded against: test.acc if reported, else the first reported
    metric that improves upwards."""
    metrics = results.study.report.metrics
    if "test.acc" in metrics:
        return "test.acc"
    return next((m for m in metrics if not lower_is_better(m)), None)


def pareto_front(costs: list[float], scores: list[float]) -> list[int]:
    """Indices of the points no other point dominates (cost <= and score >=, one strictly)."""
    front = []
    for i, (c, s) in enumerate(zip(costs, scores)):
        dominated = any(c2 <= c and s2 >= s and (c2 < c or s2 > s)
                        for j, (c2, s2) in enumerate(zip(costs, scores)) if j != i)
        if not dominated:
            front.append(i)
    return front


def _ms(stats: LatencyStats | None) -> str:
    return f"{fmt(stats.median_ms, 3)} / {fmt(stats.p90_ms, 3)}" if stats else "–"


@REPORT_SECTIONS.register("cost")
def cost_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    costs = variant_costs(r)
    if not costs:
        return None
    metric = accuracy_metric(r)
    header = ["configuration", "params", "MFLOPs (fwd, batch 1)",
              *[f"CPU ms median / p90 (batch {b})" for b in LATENCY_BATCHES],
              "train s / epoch (mean ± std)", *([f"{metric} (mean)"] if metric else [])]
    rows = []
    for g, c in costs.items():
        row = r.row(g, metric) if metric else None
        rows.append([g, f"{c.params:,}", fmt(c.flops / 1e6, 2),
                     *[_ms(c.latency.get(b)) for b in LATENCY_BATCHES],
                     f"{fmt(c.epoch_time.mean, 2)} ± {fmt(c.epoch_time.std, 2)}"
                     if c.epoch_time else "–",
                     *([fmt(row.mean) if row and row.n else "–"] if metric else [])])
    blocks: list[Block] = [
        Table(header, rows, "Cost per configuration."),
        Text(f"Params: sum of p.numel(). FLOPs: torch.utils.flop_counter, one forward pass of "
             f"one image (a multiply-add counts 2). Latency: eval-mode forward on the CPU with "
             f"{torch.get_num_threads()} thread(s), 3 warm-up + 10 timed calls; on a shared "
             f"machine the absolute numbers move with the load, compare them within one report. "
             f"Train time per epoch comes from the runs (their device and load).")]
    if metric:
        figure = _pareto_figure(ctx, costs, metric)
        if figure is not None:
            blocks.append(figure)
    return Section("Cost: parameters, FLOPs, latency, time", blocks)


def _pareto_figure(ctx: ReportContext, costs: dict[str, VariantCost], metric: str):
    r = ctx.results
    groups = [g for g in costs if r.row(g, metric) and r.row(g, metric).n]
    if not groups:
        return None
    scores = [r.row(g, metric).mean for g in groups]
    axes_spec = [("forward MFLOPs per image (log)", [costs[g].flops / 1e6 for g in groups]),
                 ("CPU latency ms, batch 1 (log)",
                  [costs[g].latency[1].median_ms if 1 in costs[g].latency else math.nan
                   for g in groups])]
    fig, axes = ctx.new_figure(ncols=2, width=6.0, height=4.5)
    for ax, (label, xs) in zip(axes[0], axes_spec):
        for i, g in enumerate(groups):
            ax.scatter([xs[i]], [scores[i]], s=40, color=f"C{r.groups.index(g) % 10}", label=g)
        front = sorted(pareto_front(xs, scores), key=lambda i: xs[i])
        # Open rings too, so a one-point front (one configuration beats all) still shows.
        ax.plot([xs[i] for i in front], [scores[i] for i in front], "k--", lw=1, marker="o",
                ms=11, mfc="none", label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"{metric} (mean over seeds)")
        ax.set_title(f"{metric} vs {label.split(' (')[0]}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return ctx.save(fig, "pareto", f"{metric} against forward FLOPs and against CPU latency; "
                                   f"the dashed line joins the configurations no other beats "
                                   f"on both cost and accuracy.")


def tradeoff_rows(results: StudyResults) -> list[dict]:
    """Per non-baseline configuration: accuracy drop vs the baseline (with the pairwise Welch
    interval, negated), FLOPs / latency / params reduction factors (baseline ÷ configuration)
    and whether the efficiency goal holds."""
    base, metric = results.study.report.baseline, accuracy_metric(results)
    costs = variant_costs(results)
    if base is None or metric is None or base not in costs:
        return []
    b, b_row = costs[base], results.row(base, metric)
    rows = []
    for g, c in costs.items():
        if g == base:
            continue
        row = results.row(g, metric)
        drop = b_row.mean - row.mean if row and row.n and b_row and b_row.n else math.nan
        pair = next((p for p in results.pairwise
                     if p.group == g and p.reference == base and p.metric == metric), None)
        ci = (-pair.ci_high, -pair.ci_low) if pair else (math.nan, math.nan)
        flops_x = b.flops / c.flops if c.flops else math.nan
        lat_b, lat_c = b.latency.get(1), c.latency.get(1)
        latency_x = lat_b.median_ms / lat_c.median_ms if lat_b and lat_c else math.nan
        met = (math.isfinite(drop) and drop < MAX_ACCURACY_DROP
               and flops_x >= MIN_FLOPS_REDUCTION)
        rows.append({"group": g, "metric": metric, "drop": drop, "drop_ci": ci,
                     "flops_reduction": flops_x, "latency_reduction": latency_x,
                     "params_reduction": b.params / c.params if c.params else math.nan,
                     "goal_met": met})
    return rows


@REPORT_SECTIONS.register("tradeoff")
def tradeoff_section(ctx: ReportContext) -> Section | None:
    rows = tradeoff_rows(ctx.results)
    if not rows:
        return None
    base, conf = ctx.results.study.report.baseline, f"{ctx.results.study.report.confidence:.0%}"
    table = [[r["group"], fmt(r["drop"]), f"[{fmt(r['drop_ci'][0])}, {fmt(r['drop_ci'][1])}]",
              f"{fmt(r['flops_reduction'], 2)}×", f"{fmt(r['latency_reduction'], 2)}×",
              f"{fmt(r['params_reduction'], 2)}×", "yes" if r["goal_met"] else "no"]
             for r in rows]
    met = [r["group"] for r in rows if r["goal_met"]]
    verdict = (f"Goal met by: {', '.join(met)}." if met else "No configuration meets the goal.")
    return Section(f"Trade-off against {base}", [
        Table(["configuration", f"{rows[0]['metric']} drop", f"{conf} CI of the drop (Welch)",
               "FLOPs reduction", "latency reduction (batch 1)", "params reduction",
               f"goal: drop < {MAX_ACCURACY_DROP:.0%} and ≥ {MIN_FLOPS_REDUCTION:g}× fewer FLOPs"],
              table),
        Text(f"Drop = {base} − configuration (mean over seeds; positive is worse). Reductions "
             f"are {base}'s cost divided by the configuration's (2× = half the cost). "
             f"{verdict} The goal is judged on the mean drop; where the interval's upper end "
             f"exceeds {MAX_ACCURACY_DROP:.0%} the seeds cannot rule out a larger drop.")])


@REPORT_SECTIONS.register("epoch_time")
def epoch_time_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    times = {g: epoch_time(r, g) for g in r.groups}
    times = {g: t for g, t in times.items() if t is not None}
    if not times:
        return None
    base = r.study.report.baseline
    ref = times.get(base) if base else None
    rows = [[g, str(t.n), f"{fmt(t.mean, 2)} ± {fmt(t.std, 2)}",
             f"{fmt(t.mean / ref.mean, 2)}×" if ref else "–"] for g, t in times.items()]
    return Section("Training time per epoch", [
        Table(["configuration", "n", "seconds / epoch (mean ± std)",
               f"relative to {base}" if ref else "relative"], rows),
        Text("train_time_s / epochs of each run (the trainer's own clock, without evaluation). "
             "An optimizer that takes two forward/backward passes per step (SAM) costs about 2× "
             "per epoch; judge it by time to target, not epochs to target.")])
