"""Report sections drawn from the trials' training diagnostics (``diagnostics.jsonl``, written
when the base config turns on ``diagnostics: [grad_flow, activation_stats, dead_units]``).

* ``grad_flow``        — weight-gradient norm per layer (depth order) per configuration, at the
  first step and at the last measured step, and the first/last-layer ratio (vanishing < 1e-3);
* ``activation_stats`` — mean, std, sparsity and saturation of each activation layer;
* ``dead_units``       — fraction of ReLU-family units that are zero on the whole validation set.

Each number is the mean over the configuration's completed seeds; a trial without
diagnostics is skipped (the section says how many seeds it used).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from archlab.analysis.diagnostic_plots import read_diagnostics, weight_tensors
from archlab.studies.sections import (REPORT_SECTIONS, Block, ReportContext, Section, Table,
                                      Text, fmt)


def group_records(ctx: ReportContext, kind: str) -> dict[str, list[list[dict]]]:
    """configuration -> one list of ``kind`` records per completed seed that has them."""
    out: dict[str, list[list[dict]]] = {}
    for trial in ctx.results.completed():
        if trial.run_dir is None:
            continue
        try:
            records = read_diagnostics(Path(trial.run_dir)).get(kind, [])
        except FileNotFoundError:
            continue
        if records:
            out.setdefault(trial.group, []).append(records)
    return out


def mean_over_seeds(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """Layer -> mean over seeds (layers in the first seed's depth order)."""
    names = list(per_seed[0])
    return {n: float(np.mean([s[n] for s in per_seed if n in s])) for n in names}


def _depth_plot(ctx: ReportContext, ax, series: dict[str, dict[str, float]], ylabel: str,
                log: bool) -> None:
    for i, group in enumerate(ctx.results.groups):
        if group not in series:
            continue
        values = list(series[group].values())
        ax.plot(range(1, len(values) + 1), values, marker="o", ms=3, color=f"C{i % 10}",
                label=group)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("layer (input → output)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")


def _seed_note(data: dict[str, list]) -> str:
    counts = sorted({len(v) for v in data.values()})
    return f"Mean over {'/'.join(map(str, counts))} seed(s) per configuration."


# ---------------------------------------------------------------------- gradient flow
def parameter_shapes(ctx: ReportContext) -> dict[str, dict[str, dict]]:
    """configuration -> the ``parameters`` record (name -> shape) of its first completed seed."""
    out: dict[str, dict[str, dict]] = {}
    for trial in ctx.results.completed():
        if trial.group in out or trial.run_dir is None:
            continue
        try:
            records = read_diagnostics(Path(trial.run_dir)).get("parameters", [])
        except FileNotFoundError:
            continue
        if records:
            out[trial.group] = records[-1].get("layers", {})
    return out


def grad_norms(record: dict, shapes: dict[str, dict] | None = None) -> dict[str, float]:
    # Weight matrices and kernels only (ndim >= 2, from the run's parameter shapes): biases
    # and norm-layer scales have their own (much smaller) scale and would zigzag the profile.
    # Runs without shapes fall back on the name; one-value parameters such as PReLU's slope
    # are then recognised by norm == mean |grad| (true only for a single element).
    weights = weight_tensors(list(record["layers"]), shapes or {})
    return {name: v["norm"] for name, v in record["layers"].items()
            if name in weights and name.endswith("weight")
            and not math.isclose(v["norm"], v["mean_abs"], rel_tol=1e-9)}


@REPORT_SECTIONS.register("grad_flow")
def grad_flow_section(ctx: ReportContext) -> Section | None:
    data = group_records(ctx, "grad_flow")
    if not data:
        return None
    shapes = parameter_shapes(ctx)
    first = {g: mean_over_seeds([grad_norms(s[0], shapes.get(g)) for s in seeds])
             for g, seeds in data.items()}
    last = {g: mean_over_seeds([grad_norms(s[-1], shapes.get(g)) for s in seeds])
            for g, seeds in data.items()}
    fig, axes = ctx.new_figure(ncols=2, width=6.5)
    _depth_plot(ctx, axes[0][0], first, "weight-gradient norm (log)", log=True)
    axes[0][0].set_title("at the first step (initialization)")
    _depth_plot(ctx, axes[0][1], last, "weight-gradient norm (log)", log=True)
    axes[0][1].set_title(f"at the last measured step")
    axes[0][1].legend(fontsize=7, ncol=2)
    fig.suptitle("Gradient flow through depth: ||∂L/∂W|| per layer")
    figure = ctx.save(fig, "grad_flow", "Weight-gradient norm per layer, mean over seeds.")
    rows = []
    for g in ctx.results.groups:
        if g not in data:
            continue
        ratios = [s[0]["depth_ratio"] for s in data[g]]
        ratio_last = [s[-1]["depth_ratio"] for s in data[g]]
        warnings = sum(len(r.get("warnings", [])) for s in data[g] for r in s)
        # Ratios span orders of magnitude (1e-10 for sigmoid): significant digits, not decimals.
        rows.append([g, f"{float(np.mean(ratios)):.3g}", f"{float(np.mean(ratio_last)):.3g}",
                     fmt(float(np.mean([s[-1]["global_norm"] for s in data[g]])), 4),
                     str(warnings)])
    table = Table(["configuration", "first/last layer grad ratio at step 1", "… at last step",
                   "global grad norm (last)", "warnings"], rows,
                  "Ratio of the first to the last layer's gradient norm: far below 1 means the "
                  "gradient vanishes on its way to the input.")
    return Section("Gradient flow", [figure, table, Text(_seed_note(data))])


# ---------------------------------------------------------------------- activation statistics
STAT_KEYS = ("mean", "std", "sparsity", "saturation")


def layer_stat(records: list[dict], key: str) -> dict[str, float]:
    return {n: v.get(key, math.nan) for n, v in records[-1]["layers"].items()}


def finite_mean(values) -> float:
    """Mean of the finite values; nan when there are none (saturation of a ReLU, say)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def activation_summary(ctx: ReportContext) -> dict[str, dict[str, float]]:
    """configuration -> each statistic averaged over layers and seeds (last measured step)."""
    data = group_records(ctx, "activation_stats")
    return {g: {k: finite_mean([finite_mean(layer_stat(s, k).values()) for s in seeds])
                for k in STAT_KEYS} for g, seeds in data.items()}


@REPORT_SECTIONS.register("activation_stats")
def activation_stats_section(ctx: ReportContext) -> Section | None:
    data = group_records(ctx, "activation_stats")
    if not data:
        return None
    fig, axes = ctx.new_figure(ncols=3, width=5.2)
    for ax, key, log in zip(axes[0], ("mean", "std", "sparsity"), (False, True, False)):
        series = {g: mean_over_seeds([layer_stat(s, key) for s in seeds])
                  for g, seeds in data.items()}
        if log:
            series = {g: {n: max(v, 1e-12) for n, v in s.items()} for g, s in series.items()}
        _depth_plot(ctx, ax, series, f"activation {key}" + (" (log)" if log else ""), log)
        ax.set_title(f"activation {key} per layer")
    axes[0][2].legend(fontsize=7, ncol=2)
    fig.suptitle("Activation statistics at the last measured training step")
    blocks: list[Block] = [ctx.save(fig, "activation_stats", "Per-layer activation mean, std "
                                    "(log) and sparsity (fraction exactly zero).")]
    summary = activation_summary(ctx)
    rows = [[g, *[fmt(summary[g][k]) for k in STAT_KEYS]] for g in ctx.results.groups
            if g in summary]
    blocks.append(Table(["configuration", "mean", "std", "sparsity", "saturation"], rows,
                        "Averaged over layers (saturation: sigmoid/tanh outputs within eps of "
                        "their bounds; – for other activations)."))
    blocks.append(Text(_seed_note(data)))
    return Section("Activation statistics", blocks)


# ---------------------------------------------------------------------- dead units
def dead_summary(ctx: ReportContext, key: str = "dead") -> dict[str, float]:
    """configuration -> fraction of watched units counted under ``key`` over all layers (last
    epoch), mean over seeds. ``dead``: exactly zero for the whole validation pass (ReLU family
    only); ``never_positive``: never above zero (every rectifier). Configurations without such
    units, or records without the key (older runs), are absent."""
    out = {}
    for g, seeds in group_records(ctx, "dead_units").items():
        fractions = []
        for s in seeds:
            layers = s[-1]["layers"]
            counted = [v for v in layers.values() if key in v]
            if key == "dead":  # only units that can output exactly zero can die
                counted = [v for v in counted if v.get("zero_region", True)]
            units = sum(v["units"] for v in counted)
            if units:
                fractions.append(sum(v[key] for v in counted) / units)
        if fractions:
            out[g] = float(np.mean(fractions))
    return out


@REPORT_SECTIONS.register("dead_units")
def dead_units_section(ctx: ReportContext) -> Section | None:
    data = group_records(ctx, "dead_units")
    data = {g: s for g, s in data.items() if any(r[-1]["layers"] for r in s)}
    if not data:
        return Section("Dead units", [Text("No configuration has rectifier activations (ReLU "
                                           "family, leaky/parametric ReLU, ELU, SELU, GELU, "
                                           "SiLU, Mish), so no unit was counted.")])
    series = {g: mean_over_seeds([{n: v.get("never_positive_fraction", v["dead_fraction"])
                                   for n, v in s[-1]["layers"].items()} for s in seeds])
              for g, seeds in data.items()}
    fig, axes = ctx.new_figure()
    _depth_plot(ctx, axes[0][0], series, "never-positive fraction", log=False)
    axes[0][0].set_title("Units never positive on the validation set, per layer (last epoch)")
    axes[0][0].legend(fontsize=8)
    dead, never = dead_summary(ctx, "dead"), dead_summary(ctx, "never_positive")
    rows = [[g, f"{100 * dead[g]:.1f}%" if g in dead else "– (no exact-zero region)",
             f"{100 * never[g]:.1f}%" if g in never else
             "not recorded (older run)" if g in data else "n/a (no rectifier units)"]
            for g in ctx.results.groups]
    return Section("Dead units", [
        ctx.save(fig, "dead_units", "Fraction of units whose output is never positive on the "
                                    "validation set."),
        Table(["configuration", "dead units (all layers)", "never-positive units (all layers)"],
              rows),
        Text("Dead: output exactly zero for every validation example, possible only for the "
             "ReLU family (ReLU, ReLU6, hard-swish/sigmoid), and then no gradient flows. "
             "Never positive: output never above zero, i.e. the pre-activation stayed negative; "
             "for ReLU this is the same as dead, for leaky/parametric ReLU, ELU, SELU, GELU, "
             "SiLU and Mish the unit still passes a small gradient. " + _seed_note(data))])
