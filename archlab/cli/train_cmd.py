"""archlab train -c CONFIG [key.path=value ...] | --resume RUN"""

from __future__ import annotations

import sys

from archlab.cli import EXIT_FAILURE, UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model from a config",
                       description="Train from a YAML recipe with dotted overrides, e.g. "
                       "archlab train -c configs/fashion_mnist/default.yaml train.epochs=3 "
                       "optim.lr=0.05")
    p.add_argument("-c", "--config", help="YAML recipe (default: built-in defaults)")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="override config values, e.g. train.epochs=3")
    p.add_argument("--resume", metavar="RUN", help="continue RUN (id or directory) from its last "
                   "checkpoint; overrides apply on top of its saved config")
    p.add_argument("--runs-dir", default="runs", help="run store root (default: runs)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(handler=run)


def run(args) -> int:
    import yaml

    from archlab.config.loading import apply_overrides
    from archlab.runs.config import ExperimentConfig, build_config, config_to_dict, load_config
    from archlab.runs.experiment import run_experiment
    from archlab.runs.store import RunNotFoundError, RunStore

    if args.resume:
        if args.config:
            raise UsageError("--resume uses the run's saved config; give overrides, not -c")
        try:
            record = RunStore(args.runs_dir).get(args.resume)
        except RunNotFoundError as e:
            raise UsageError(str(e)) from None
        tree = yaml.safe_load((record.path / "config.yaml").read_text())
        cfg = build_config(apply_overrides(tree, args.overrides, ExperimentConfig),
                           str(record.path / "config.yaml"))
    else:
        cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    result = run_experiment(cfg, runs_dir=args.runs_dir, resume=args.resume)
    if not result.ok:
        print(f"run {result.run_id} failed: {result.error}", file=sys.stderr)
        print(f"run stored in {result.run_dir}", file=sys.stderr)
        return EXIT_FAILURE
    m = result.metrics
    lines = [f"run {result.run_id} ({cfg.model.name} on {cfg.data.name}, seed {cfg.train.seed})"]
    if "test.acc" in m:
        lines.append(f"  test accuracy  {100 * m['test.acc']:.2f}%   (test loss {m['test.loss']:.4f})")
    if "test.bpc" in m:
        lines.append(f"  test bits/char {m['test.bpc']:.4f}   (perplexity {m['test.ppl']:.3f}, "
                     f"loss {m['test.loss']:.4f} nats)")
    lines.append(f"  training time  {m['train_time_s']:.1f} s for {m['epochs']} epochs "
                 f"(wall {m['wall_time_s']:.1f} s)")
    lines.append(f"  stored in      {result.run_dir}")
    print("\n".join(lines))
    return 0
