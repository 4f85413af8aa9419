"""Report sections: a registry of functions turning aggregated results into text, tables and
figures. The standard ones (summary, pairwise, curves, targets, trials) open every report; a
study YAML adds its own by name (``report: {sections: [grad_flow, recommendations]}``).

A section is ``fn(ctx: ReportContext) -> Section | None`` (None: nothing to show). It returns
blocks — :class:`Text`, :class:`Table`, :class:`Figure` — and the report renders the same blocks
as Markdown and as self-contained HTML, so a new section never writes markup::

    @REPORT_SECTIONS.register("my_plot")
    def my_plot(ctx):
        fig, ax = ctx.new_figure()
        ...
        return Section("My plot", [ctx.save(fig, "my_plot", "what it shows")])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from archlab.registry import Registry
from archlab.studies.aggregate import StudyResults, lower_is_better


def integer_ticks():
    """Tick locator for an epoch axis: whole numbers only (matplotlib is imported lazily)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


@dataclass
class Text:
    text: str


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    path: Path
    caption: str


Block = Union[Text, Table, Figure]


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ReportContext:
    results: StudyResults
    figures_dir: Path

    def new_figure(self, ncols: int = 1, nrows: int = 1, width: float = 7.0,
                   height: float = 4.2) -> tuple[Any, Any]:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)

    def save(self, fig, name: str, caption: str) -> Figure:
        import matplotlib.pyplot as plt

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        path = self.figures_dir / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return Figure(path, caption)


SectionFn = Callable[[ReportContext], Union[Section, None]]
REPORT_SECTIONS: Registry[SectionFn] = Registry("report section")
STANDARD_SECTIONS = ("summary", "pairwise", "curves", "targets", "trials")


def fmt(value: Any, digits: int = 4) -> str:
    """A number as a table shows it; nan/None as an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.{digits}f}"


def fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def confidence_label(results: StudyResults) -> str:
    return f"{results.study.report.confidence:.0%}"


@REPORT_SECTIONS.register("summary")
def summary_section(ctx: ReportContext) -> Section:
    r, conf = ctx.results, confidence_label(ctx.results)
    header = ["configuration", *[f"{m} (mean ± std)" for m in r.study.report.metrics],
              "n"]
    rows = []
    for g in r.groups:
        cells = []
        for m in r.study.report.metrics:
            row = r.row(g, m)
            cells.append(f"{fmt(row.mean)} ± {fmt(row.std)}" if row and row.n else "–")
        rows.append([g, *cells, str(len(r.completed(g)))])
    ci_rows = [[row.group, row.metric, str(row.n), fmt(row.mean), fmt(row.std),
                f"[{fmt(row.ci_low)}, {fmt(row.ci_high)}]", fmt(row.min), fmt(row.max)]
               for row in r.summary]
    blocks: list[Block] = [
        Table(header, rows, "Final metrics over seeds (std with ddof=1)."),
        Table(["configuration", "metric", "n", "mean", "std", f"{conf} CI (Student t)", "min",
               "max"], ci_rows, f"Every summarised metric with its {conf} confidence interval."),
    ]
    metrics = [m for m in r.study.report.metrics if any(row.n for row in r.summary
                                                        if row.metric == m)]
    if metrics:
        blocks.append(_summary_figure(ctx, metrics))
    return Section("Summary", blocks)


def _summary_figure(ctx: ReportContext, metrics: Sequence[str]) -> Figure:
    r = ctx.results
    width = min(10.0, max(3.2, 0.7 * len(r.groups) + 1.5))
    # Side by side while it fits a page (~17 in); one metric per row beyond that.
    side = width * len(metrics) <= 17
    fig, axes = ctx.new_figure(ncols=len(metrics) if side else 1,
                               nrows=1 if side else len(metrics), width=width)
    for ax, metric in zip(axes.flat, metrics):
        for i, g in enumerate(r.groups):
            row = r.row(g, metric)
            if row is None or not row.n:
                continue
            low = row.mean - row.ci_low if math.isfinite(row.ci_low) else 0.0
            ax.errorbar([i], [row.mean], yerr=[[low], [low]], fmt="o", color=f"C{i % 10}",
                        capsize=4, label=g)
            ax.scatter([i] * row.n, r.values(g, metric), color=f"C{i % 10}", alpha=0.35, s=14)
        ax.set_xticks(range(len(r.groups)), r.groups, rotation=35, ha="right")
        ax.set_xlim(-0.6, len(r.groups) - 0.4)
        ax.set_ylabel(metric)
        arrow = "lower is better" if lower_is_better(metric) else "higher is better"
        ax.set_title(f"{metric} ({arrow})")
        ax.grid(alpha=0.3)
    fig.suptitle(f"Mean and {confidence_label(r)} CI per configuration (dots: seeds)")
    return ctx.save(fig, "summary", "Mean with its confidence interval; each dot is one seed.")


@REPORT_SECTIONS.register("pairwise")
def pairwise_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    if not r.pairwise:
        return None
    conf = confidence_label(r)
    boot = r.study.report.bootstrap_resamples > 0
    header = ["configuration", "vs", "metric", "n", "difference", f"{conf} CI (Welch)",
              *([f"{conf} CI (bootstrap)"] if boot else []), "p (Welch)", "p (Holm)",
              "Hedges' g"]
    rows = []
    for p in r.pairwise:
        rows.append([p.group, p.reference, p.metric, f"{p.n} vs {p.n_ref}", fmt(p.diff),
                     f"[{fmt(p.ci_low)}, {fmt(p.ci_high)}]",
                     *([f"[{fmt(p.boot_low)}, {fmt(p.boot_high)}]"] if boot else []),
                     fmt_p(p.p_value), fmt_p(p.p_holm), fmt(p.hedges_g, 2)])
    note = ("Difference = configuration − reference. p: two-sided Welch's t-test (unequal "
            "variances); Holm: adjusted within each metric's comparisons. Effect size: Hedges' g "
            "(Cohen's d with pooled ddof=1 std, times the exact small-sample correction); "
            "|g| ≈ 0.2 small, 0.5 medium, 0.8 large. With few seeds a non-significant p is weak "
            "evidence of no difference.")
    if boot:
        note += (f" Bootstrap: percentile interval from {r.study.report.bootstrap_resamples} "
                 f"resamples (seed {r.study.report.bootstrap_seed}); with fewer than ~10 seeds "
                 f"per side it is too narrow, prefer the Welch interval.")
    return Section("Pairwise comparisons", [Table(header, rows), Text(note)])


@REPORT_SECTIONS.register("curves")
def curves_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    metrics = [m for m, bands in r.curves.items() if any(b.epochs for b in bands.values())]
    if not metrics:
        return None
    band = ("± 1 std" if r.study.report.band == "std"
            else f"{confidence_label(r)} CI")
    blocks: list[Block] = []
    for metric in metrics:
        fig, axes = ctx.new_figure()
        ax = axes[0][0]
        for i, g in enumerate(r.groups):
            b = r.curves[metric][g]
            if not b.epochs:
                continue
            ax.plot(b.epochs, b.mean, marker="o", ms=3, color=f"C{i % 10}", label=g)
            ax.fill_between(b.epochs, b.low, b.high, color=f"C{i % 10}", alpha=0.2)
        ax.xaxis.set_major_locator(integer_ticks())  # epochs are whole
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} per epoch (mean, band {band} over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, ncol=2 if len(r.groups) > 6 else 1)
        name = "curve_" + metric.replace(".", "_").replace("/", "_")
        blocks.append(ctx.save(fig, name, f"{metric}: mean over seeds with {band} band."))
    return Section("Learning curves", blocks)


@REPORT_SECTIONS.register("targets")
def targets_section(ctx: ReportContext) -> Section | None:
    r = ctx.results
    if not r.targets:
        return None
    rows = []
    for t in r.targets:
        direction = "≤" if lower_is_better(t.metric) else "≥"
        rows.append([t.group, f"{t.metric} {direction} {fmt(t.target)}", f"{t.reached}/{t.n}",
                     f"{fmt(t.epochs.mean, 1)} ± {fmt(t.epochs.std, 1)}" if t.epochs else "–",
                     f"{fmt(t.time_s.mean, 1)} ± {fmt(t.time_s.std, 1)}" if t.time_s else "–"])
    return Section("Convergence speed", [
        Table(["configuration", "target", "seeds reaching it", "epochs (mean ± std)",
               "train time s (mean ± std)"], rows),
        Text("Epochs and cumulative training time until the metric first reaches the target, "
             "over the seeds that reached it.")])


@REPORT_SECTIONS.register("trials")
def trials_section(ctx: ReportContext) -> Section:
    r = ctx.results
    rows = [[t.key, t.status, t.run_id or "–", (t.error or "")[:200]] for t in r.trials]
    counts: dict[str, int] = {}
    for t in r.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return Section("Trials", [Text(f"{len(r.trials)} trials: {text}. Failed trials are left out "
                                   f"of every statistic above."),
                              Table(["trial", "status", "run", "error"], rows)])
