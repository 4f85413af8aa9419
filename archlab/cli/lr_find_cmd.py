"""archlab lr-find -c CONFIG [key.path=value ...] [--start-lr] [--end-lr] [--steps]"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test: sweep the lr, suggest one, save a plot",
                       description="Train for --steps steps with an exponentially growing lr "
                       "(Smith 2017), smooth the loss, suggest the steepest-descent and valley "
                       "lrs, and save the plot in the run's artifacts. The model and optimizer "
                       "are restored afterwards.")
    p.add_argument("-c", "--config", help="YAML recipe")
    p.add_argument("overrides", nargs="*", metavar="key.path=value")
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archlab.cli import UsageError
    from archlab.runs.config import load_config
    from archlab.runs.lr_find import run_lr_find

    cfg = load_config(args.config, args.overrides)
    if not 0 < args.start_lr < args.end_lr:
        raise UsageError(f"need 0 < --start-lr < --end-lr, got {args.start_lr}, {args.end_lr}")
    if args.steps < 2:
        raise UsageError(f"--steps must be >= 2, got {args.steps}")
    record, result = run_lr_find(cfg, runs_dir=args.runs_dir, start_lr=args.start_lr,
                                 end_lr=args.end_lr, num_steps=args.steps)

    def fmt(v):
        return "-" if v is None else f"{v:.3g}"

    print(f"lr-find {record.run_id} ({cfg.model.name} on {cfg.data.name}, {len(result.lrs)} steps"
          f"{', stopped at divergence' if result.diverged else ''})")
    print(f"  steepest descent  {fmt(result.suggestion_steepest)}")
    print(f"  valley            {fmt(result.suggestion_valley)}")
    print(f"  plot              {record.path / 'artifacts' / 'lr_find.png'}")
    return 0
