"""archlab eval RUN [--checkpoint best|last|PATH] [--split test|val]"""

from __future__ import annotations

import json
from pathlib import Path

from archlab.cli import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run's checkpoint",
                       description="Rebuild a run's model from its checkpoint (config included) "
                       "and evaluate it on a data split.")
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    p.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint file")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--tta-flip", action="store_true", help="average predictions with mirrors")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--json", action="store_true", help="print metrics as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from archlab.runs.evaluation import evaluate_checkpoint
    from archlab.runs.store import RunNotFoundError, RunStore

    if args.checkpoint in ("best", "last"):
        try:
            record = RunStore(args.runs_dir).get(args.run)
        except RunNotFoundError as e:
            raise UsageError(str(e)) from None
        path = record.path / "checkpoints" / f"{args.checkpoint}.ckpt"
        if args.checkpoint == "best" and not path.exists():
            path = record.path / "checkpoints" / "last.ckpt"
    else:
        path = Path(args.checkpoint)
    metrics = evaluate_checkpoint(path, split=args.split, tta_flip=args.tta_flip or None)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{path}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
