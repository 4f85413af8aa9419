"""archlab profile MODEL|RUN [MODEL|RUN ...] [--batch-sizes 1 8 32] [--input-size 3 224 224]
[--json] [--per-layer] [--variants] [--train-throughput] [--out DIR] [--device auto|cpu|cuda]

One target: its params, FLOPs/MACs, latency, memory (and optionally training throughput,
execution variants, the per-layer table). Several targets: a comparison table, and when runs are
among them a Pareto plot of test accuracy vs latency and FLOPs written to ``--out``.
"""

from __future__ import annotations

import json
from pathlib import Path

from archlab.cli import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("profile", help="params, FLOPs, latency, memory of models and runs",
                       description="Measure what models cost; several targets are compared "
                       "(with a Pareto plot when trained runs are given).")
    p.add_argument("targets", nargs="+", metavar="MODEL|RUN",
                   help="registered model name, run id (or unique prefix), or run directory")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1], metavar="B",
                   help="batch sizes for latency and memory (default: 1)")
    p.add_argument("--input-size", nargs="+", type=int, default=None, metavar="N",
                   help="input size without the batch, e.g. 3 224 224 (default: the model's "
                   "default_cfg, or the run's data)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default auto)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    p.add_argument("--runs", type=int, default=10, help="timed calls per batch size")
    p.add_argument("--per-layer", action="store_true", help="add the per-layer table")
    p.add_argument("--depth", type=int, default=None,
                   help="fold the per-layer table to this module depth")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip activation and peak memory")
    p.add_argument("--train-throughput", action="store_true",
                   help="also time training steps (forward + backward + SGD step)")
    p.add_argument("--variants", action="store_true",
                   help="also time channels_last, bf16 autocast and torch.compile vs fp32")
    p.add_argument("--compile-on-cpu", action="store_true",
                   help="with --variants: time torch.compile on CPU too (slow to compile)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="write profile.json here; the Pareto plot goes here too "
                   "(default: current directory)")
    p.add_argument("--runs-dir", default="runs", help="run store for run ids (default runs)")
    p.set_defaults(handler=run)


def _options(args) -> dict:
    import torch

    if any(b < 1 for b in args.batch_sizes):
        raise UsageError(f"--batch-sizes must be positive integers, got {args.batch_sizes}")
    if args.input_size is not None and any(n < 1 for n in args.input_size):
        raise UsageError(f"--input-size must be positive integers, got {args.input_size}")
    if args.runs < 1 or args.warmup < 0:
        raise UsageError(f"need --runs >= 1 and --warmup >= 0, got {args.runs}, {args.warmup}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device} but CUDA is not available; use auto or cpu")
    return dict(batch_sizes=args.batch_sizes, input_size=args.input_size, device=args.device,
                warmup=args.warmup, runs=args.runs, memory=args.memory,
                train_throughput=args.train_throughput, variants=args.variants,
                compile_on_cpu=args.compile_on_cpu)


def _resolve(ref: str, runs_dir: str):
    """A model name stays a string; anything else must be a run."""
    from archlab.models import MODELS
    from archlab.runs.evaluation import load_run_target
    from archlab.runs.store import RunNotFoundError

    if ref in MODELS:
        return ref
    try:
        return load_run_target(ref, runs_dir)
    except RunNotFoundError as e:
        raise UsageError(f"{MODELS.unknown_message(ref)}; nor is it a run: {e}") from None


def run(args) -> int:
    from archlab.profiling.compare import compare, comparison_table, plot_pareto

    options = _options(args)
    targets = [_resolve(ref, args.runs_dir) for ref in args.targets]
    reports = compare(targets, **options)

    pareto = None
    if len(reports) > 1 and any(r.accuracy is not None for r in reports):
        pareto = plot_pareto(reports, Path(args.out or ".") / "pareto.png")
    payload = ([r.to_dict(args.per_layer) for r in reports] if len(reports) > 1
               else reports[0].to_dict(args.per_layer))
    if len(reports) > 1:
        payload = {"reports": payload, "pareto_png": str(pareto) if pareto else None}
    if args.out is not None:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "profile.json").write_text(json.dumps(payload, indent=2))

    if args.json:
        print(json.dumps(payload))
        return 0
    if len(reports) == 1:
        print(reports[0].format(per_layer=args.per_layer, max_depth=args.depth))
    else:
        if args.per_layer or args.variants:
            for r in reports:
                print(r.format(per_layer=args.per_layer, max_depth=args.depth) + "\n")
        print(comparison_table(reports))
        if pareto is not None:
            print(f"Pareto plot: {pareto}")
    if args.out is not None:
        print(f"wrote {Path(args.out) / 'profile.json'}")
    return 0
