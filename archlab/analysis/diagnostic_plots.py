"""Plots of a run's ``diagnostics.jsonl``, written after the fact or at the end of fit.

``plot_diagnostics("runs/digits/20260101-...")`` writes, for whatever was recorded, into
``<run_dir>/artifacts/diagnostics/``:

* ``grad_flow.png`` — gradient norm vs depth, one line per logged step (colour = step), log
  scale; the line joins weight matrices and kernels, biases and norm parameters are crosses;
  next to it the global gradient norm over training;
* ``activation_stats.png`` — mean, std, sparsity (and saturation) per layer, colour = step;
* ``dead_units.png`` — dead-unit fraction per layer (rows) and epoch (columns), in percent;
* ``weight_stats.png`` — weight norm per layer and update-to-weight ratio per layer over steps;
* ``activation_histograms.png`` — each layer's output histogram at the chosen epochs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

#: Layers shown by name on a depth axis before the labels are thinned out.
_MAX_TICKS = 30
#: Layers drawn in the histogram grid (the first ones by depth).
_MAX_HIST_PANELS = 16


def read_diagnostics(run_dir: str | Path) -> dict[str, list[dict]]:
    """Records of ``<run_dir>/diagnostics.jsonl`` grouped by ``kind``, in file order."""
    path = Path(run_dir) / "diagnostics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no diagnostics recorded for {run_dir}: {path} does not exist "
                                f"(train with diagnostics=all or diagnostics=[grad_flow, ...])")
    kinds: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            kinds.setdefault(record["kind"], []).append(record)
    return kinds


def plot_diagnostics(run_dir: str | Path) -> list[Path]:
    """Write the PNGs for every kind of record present; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    kinds = read_diagnostics(run_dir)
    out_dir = Path(run_dir) / "artifacts" / "diagnostics"
    out_dir.mkdir(parents=True, exist_ok=True)
    plotters = {"grad_flow": (_plot_grad_flow, "grad_flow.png"),
                "activation_stats": (_plot_activation_stats, "activation_stats.png"),
                "dead_units": (_plot_dead_units, "dead_units.png"),
                "weight_stats": (_plot_weight_stats, "weight_stats.png"),
                "bn_stats": (_plot_bn_stats, "bn_stats.png"),
                "activation_histogram": (_plot_histograms, "activation_histograms.png")}
    shapes = kinds.get("parameters", [{}])[-1].get("layers", {})
    written = []
    for kind, (plot, filename) in plotters.items():
        records = [r for r in kinds.get(kind, []) if r.get("layers")]
        if records:
            path = out_dir / filename
            if kind in ("grad_flow", "weight_stats"):
                plot(records, path, weight_tensors(_layer_order(records), shapes))
            else:
                plot(records, path)
            written.append(path)
    return written


# --------------------------------------------------------------------------- helpers
def _layer_order(records: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r["layers"]))
    return list(names)


def weight_tensors(names: list[str], shapes: dict[str, dict]) -> set[str]:
    """Names of the weight matrices and kernels (ndim >= 2) among ``names``.

    Runs recorded before the ``parameters`` record existed fall back on the name: everything
    but ``*.bias`` (their norm-layer scales then count as weights).
    """
    if shapes:
        return {n for n in names if len(shapes.get(n, {}).get("shape", [])) >= 2}
    return {n for n in names if not n.endswith("bias")}


def _positive(value) -> float:
    """Log axes cannot show 0, None or NaN: those points become gaps."""
    return value if isinstance(value, (int, float)) and value > 0 and math.isfinite(value) \
        else float("nan")


def _depth_axis(ax, names: list[str]) -> None:
    every = max(1, math.ceil(len(names) / _MAX_TICKS))
    ticks = list(range(0, len(names), every))
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=60, ha="right", fontsize=7)
    ax.set_xlabel("layer (input → output)")


def _by_step(fig, ax, records: list[dict], names: list[str], key: str, log: bool,
             weights: set[str] | None = None):
    """One line per record over the depth axis, coloured by its step.

    With ``weights`` (per-parameter plots) the line joins only the weight tensors, whose
    magnitudes are comparable along depth; biases and norm scales, often orders of magnitude
    apart, are drawn as unjoined crosses so they do not turn the curve into a saw-tooth.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    steps = [r["step"] for r in records]
    norm = plt.Normalize(min(steps), max(max(steps), min(steps) + 1))
    cmap = plt.get_cmap("viridis")
    joined = [i for i, n in enumerate(names) if weights is None or n in weights]
    apart = [i for i in range(len(names)) if i not in set(joined)]
    for r in records:
        ys = [r["layers"].get(n, {}).get(key) for n in names]
        ys = [_positive(y) if log else (float("nan") if y is None else y) for y in ys]
        colour = cmap(norm(r["step"]))
        ax.plot(joined, [ys[i] for i in joined], color=colour, lw=1.2, marker=".", ms=4)
        if apart:
            ax.plot(apart, [ys[i] for i in apart], color=colour, ls="none", marker="x", ms=4)
    if log:
        ax.set_yscale("log")
    if weights is not None and apart:
        ax.legend(handles=[Line2D([], [], color="grey", marker=".", label="weight matrices / "
                                  "kernels"),
                           Line2D([], [], color="grey", marker="x", ls="none",
                                  label="biases and norm parameters")],
                  fontsize=8, loc="best")
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="optimizer step")
    _depth_axis(ax, names)


# --------------------------------------------------------------------------- plots
def _plot_grad_flow(records: list[dict], path: Path, weights: set[str] | None = None) -> None:
    import matplotlib.pyplot as plt

    names = _layer_order(records)
    fig, (ax, ax_global) = plt.subplots(1, 2, figsize=(14, 5.5), width_ratios=[2.2, 1])
    _by_step(fig, ax, records, names, "norm", log=True, weights=weights)
    ax.set_ylabel("gradient L2 norm (log)")
    ax.set_title("Gradient flow: per-layer gradient norm vs depth")
    ax.grid(alpha=0.3, which="both")
    ax_global.plot([r["step"] for r in records], [_positive(r["global_norm"]) for r in records],
                   marker=".", label="global norm")
    warned = [r for r in records if r.get("warnings")]
    if warned:
        ax_global.scatter([r["step"] for r in warned],
                          [_positive(r["global_norm"]) for r in warned], color="red", zorder=3,
                          label="warning raised")
    ax_global.set_yscale("log")
    ax_global.set_xlabel("optimizer step")
    ax_global.set_ylabel("global gradient norm (log)")
    ax_global.set_title("Global gradient norm")
    ax_global.legend()
    ax_global.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_activation_stats(records: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = _layer_order(records)
    keys = ["mean", "std", "sparsity"]
    if any("saturation" in v for r in records for v in r["layers"].values()):
        keys.append("saturation")
    labels = {"mean": "mean", "std": "std", "sparsity": "fraction of exact zeros",
              "saturation": "fraction saturated"}
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        _by_step(fig, ax, records, names, key, log=False)
        ax.set_ylabel(labels[key])
        ax.set_title(f"Activation {labels[key]} per layer")
        ax.grid(alpha=0.3)
    fig.suptitle("Activation statistics on training batches")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_dead_units(records: list[dict], path: Path) -> None:
    """A layer x epoch heat map: lines of several layers that all sit at 0 would hide each
    other, a cell per (layer, epoch) with its percentage cannot."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = _layer_order(records)
    epochs = [r["epoch"] for r in records]
    fractions = np.array([[r["layers"].get(n, {}).get("dead_fraction", np.nan) for r in records]
                          for n in names], dtype=float)  # (layers, epochs)
    units = {n: r["layers"][n]["units"] for r in records for n in names if n in r["layers"]}
    fig, ax = plt.subplots(figsize=(min(6.5 + 0.45 * len(epochs), 18),
                                    min(2.0 + 0.32 * len(names), 20)))
    image = ax.imshow(np.ma.masked_invalid(fractions), cmap="Reds", vmin=0, vmax=1,
                      aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="fraction of dead units")
    if len(names) * len(epochs) <= 300:  # room for the numbers
        for i in range(len(names)):
            for j in range(len(epochs)):
                f = fractions[i, j]
                if np.isfinite(f):  # a few dead units must not read as 0%
                    ax.text(j, i, "<1%" if 0 < f < 0.01 else f"{100 * f:.0f}%", ha="center",
                            va="center", fontsize=7, color="white" if f > 0.6 else "black")
    every = max(1, math.ceil(len(names) / 40))
    ax.set_yticks(range(0, len(names), every))
    ax.set_yticklabels([f"{n} ({units.get(n, '?')} units)" for n in names[::every]],
                       fontsize=7)
    every = max(1, math.ceil(len(epochs) / 25))
    ax.set_xticks(range(0, len(epochs), every))
    ax.set_xticklabels([str(e) for e in epochs[::every]])
    ax.set_xlabel("epoch (after its validation pass)")
    ax.set_ylabel("ReLU-family layer (input at the top)")
    last = fractions[:, -1]
    total_dead = sum(r["layers"][n]["dead"] for r in records[-1:] for n in names
                     if n in r["layers"])
    total_units = sum(units.values())
    summary = (f"\n{total_dead} of {total_units} units dead after the last epoch; worst layer "
               f"{np.nanmax(last):.0%}" if np.isfinite(last).any() else "")
    ax.set_title("Dead ReLU-family units (zero for the whole validation pass)" + summary,
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_weight_stats(records: list[dict], path: Path, weights: set[str] | None = None) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    names = _layer_order(records)
    fig, (ax_norm, ax_ratio) = plt.subplots(1, 2, figsize=(15, 5.5))
    _by_step(fig, ax_norm, records, names, "norm", log=True, weights=weights)
    ax_norm.set_ylabel("weight L2 norm (log)")
    ax_norm.set_title("Weight norm per layer")
    ax_norm.grid(alpha=0.3, which="both")
    _by_step(fig, ax_ratio, records, names, "update_ratio", log=True, weights=weights)
    # ~1e-3 is the usual healthy update:weight ratio (Karpathy, CS231n).
    ax_ratio.axhline(1e-3, color="grey", ls="--")
    ax_ratio.set_ylabel("||ΔW|| / ||W|| per step (log)")
    ax_ratio.set_title("Update-to-weight ratio per layer")
    legend = ax_ratio.get_legend()
    handles = legend.legend_handles if legend is not None else []
    ax_ratio.legend(handles=[*handles, Line2D([], [], color="grey", ls="--",
                                              label="rule of thumb 1e-3")], fontsize=8)
    ax_ratio.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_bn_stats(records: list[dict], path: Path) -> None:
    """Running / data variance and the eval-mode mean offset per BatchNorm layer, a line per
    epoch: healthy layers sit near 1 and 0, unsettled running averages stand out."""
    import matplotlib.pyplot as plt

    names = _layer_order(records)
    fig, (ax_var, ax_mean) = plt.subplots(1, 2, figsize=(15, 5.5))
    _by_step(fig, ax_var, records, names, "var_ratio", log=True)
    threshold = records[-1].get("threshold")
    ax_var.axhline(1.0, color="grey", lw=0.8)
    if threshold:
        for level in (threshold, 1 / threshold):
            ax_var.axhline(level, color="tab:red", ls="--", lw=0.8)
        ax_var.plot([], [], color="tab:red", ls="--", label=f"warning at {threshold:g}x either way")
        ax_var.legend(fontsize=8)
    ax_var.set_ylabel("running var / data var (log, geometric mean over channels)")
    ax_var.set_title("BatchNorm running variance vs the validation data's")
    ax_var.grid(alpha=0.3, which="both")
    _by_step(fig, ax_mean, records, names, "mean_shift", log=False)
    ax_mean.set_ylabel("|running mean - data mean| / data std")
    ax_mean.set_title("Offset eval mode adds, in data standard deviations")
    ax_mean.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_histograms(records: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = _layer_order(records)[:_MAX_HIST_PANELS]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    cmap = plt.get_cmap("plasma")
    for ax, name in zip(axes.flat, names):
        for j, r in enumerate(records):
            h = r["layers"].get(name)
            if h is None:
                continue
            counts, lo, hi = h["counts"], h["min"], h["max"]
            width = (hi - lo) / len(counts)
            total = sum(counts) or 1.0
            ax.stairs([c / total for c in counts], [lo + k * width for k in range(len(counts) + 1)],
                      color=cmap(0.85 * j / max(len(records) - 1, 1)),
                      label=f"after epoch {r['epoch']}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("activation value")
        # Log scale: a ReLU's spike of exact zeros (often half the values) would otherwise
        # flatten the tail, which is where saturation and outliers show.
        ax.set_yscale("log")
        ax.set_ylabel("fraction of values (log)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle("Activation histograms (first validation batch)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
