"""Plots of a run's ``diagnostics.jsonl``, written after the fact or at the end of fit.

``plot_diagnostics("runs/digits/20260101-...")`` writes, for whatever was recorded, into
``<run_dir>/artifacts/diagnostics/``:

* ``grad_flow.png`` — gradient norm vs depth, one line per logged step (colour = step), log
  scale, next to the global gradient norm over training;
* ``activation_stats.png`` — mean, std, sparsity (and saturation) per layer, colour = step;
* ``dead_units.png`` — dead-unit fraction per layer over epochs;
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
                "activation_histogram": (_plot_histograms, "activation_histograms.png")}
    written = []
    for kind, (plot, filename) in plotters.items():
        records = [r for r in kinds.get(kind, []) if r.get("layers")]
        if records:
            path = out_dir / filename
            plot(records, path)
            written.append(path)
    return written


# --------------------------------------------------------------------------- helpers
def _layer_order(records: list[dict]) -> list[str]:
    names: dict[str, None] = {}
    for r in records:
        names.update(dict.fromkeys(r["layers"]))
    return list(names)


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


def _by_step(fig, ax, records: list[dict], names: list[str], key: str, log: bool):
    """One line per record over the depth axis, coloured by its step; returns the mappable."""
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    norm = plt.Normalize(min(steps), max(max(steps), min(steps) + 1))
    cmap = plt.get_cmap("viridis")
    for r in records:
        ys = [r["layers"].get(n, {}).get(key) for n in names]
        ys = [_positive(y) if log else (float("nan") if y is None else y) for y in ys]
        ax.plot(range(len(names)), ys, color=cmap(norm(r["step"])), lw=1.2, marker=".", ms=3)
    if log:
        ax.set_yscale("log")
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label="optimizer step")
    _depth_axis(ax, names)


# --------------------------------------------------------------------------- plots
def _plot_grad_flow(records: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = _layer_order(records)
    fig, (ax, ax_global) = plt.subplots(1, 2, figsize=(14, 5), width_ratios=[2.2, 1])
    _by_step(fig, ax, records, names, "norm", log=True)
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
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = _layer_order(records)
    fig, ax = plt.subplots(figsize=(9, 5))
    epochs = [r["epoch"] for r in records]
    cmap = plt.get_cmap("viridis")
    for i, name in enumerate(names):
        ys = [r["layers"].get(name, {}).get("dead_fraction", float("nan")) for r in records]
        ax.plot(epochs, ys, marker="o", color=cmap(i / max(len(names) - 1, 1)), label=name)
    ax.set_ylim(-0.02, 1.02)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction of dead units")
    ax.set_title("Dead ReLU-family units per layer (zero for the whole validation pass)")
    ax.grid(alpha=0.3)
    ax.legend(title="layer (input → output)", fontsize=7, loc="center left",
              bbox_to_anchor=(1.01, 0.5), ncol=1 if len(names) <= 20 else 2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_weight_stats(records: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = _layer_order(records)
    fig, (ax_norm, ax_ratio) = plt.subplots(1, 2, figsize=(15, 5))
    _by_step(fig, ax_norm, records, names, "norm", log=True)
    ax_norm.set_ylabel("weight L2 norm (log)")
    ax_norm.set_title("Weight norm per layer")
    ax_norm.grid(alpha=0.3, which="both")
    _by_step(fig, ax_ratio, records, names, "update_ratio", log=True)
    # ~1e-3 is the usual healthy update:weight ratio (Karpathy, CS231n).
    ax_ratio.axhline(1e-3, color="grey", ls="--", label="rule of thumb 1e-3")
    ax_ratio.set_ylabel("||ΔW|| / ||W|| per step (log)")
    ax_ratio.set_title("Update-to-weight ratio per layer")
    ax_ratio.legend(loc="lower right")
    ax_ratio.grid(alpha=0.3, which="both")
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
        ax.set_ylabel("fraction of values")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle("Activation histograms (first validation batch)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
