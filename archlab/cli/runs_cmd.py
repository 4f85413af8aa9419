"""archlab runs ls | show RUN | compare RUN RUN [...]"""

from __future__ import annotations

import json
import time

from archlab.cli import UsageError

DEFAULT_COLUMNS = ("val.acc", "test.acc", "train_time_s")


def add_parser(sub) -> None:
    p = sub.add_parser("runs", help="list, inspect and compare stored runs")
    p.add_argument("--runs-dir", default="runs")
    rs = p.add_subparsers(dest="runs_command", metavar="SUBCOMMAND", required=True)
    ls = rs.add_parser("ls", help="list runs", description="List runs from the SQLite index.")
    ls.add_argument("--experiment", "-e")
    ls.add_argument("--status", choices=("running", "completed", "failed", "interrupted"))
    ls.add_argument("--sort", help="metric (e.g. val.acc) or created")
    ls.add_argument("--ascending", action="store_true")
    ls.add_argument("--limit", type=int)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=run_ls)
    show = rs.add_parser("show", help="show one run: config, meta, final metrics")
    show.add_argument("run", metavar="RUN")
    show.set_defaults(handler=run_show)
    cmp_ = rs.add_parser("compare", help="metrics and config differences of runs side by side")
    cmp_.add_argument("runs", nargs="+", metavar="RUN")
    cmp_.set_defaults(handler=run_compare)


def _store(args):
    from archlab.runs.store import RunStore

    return RunStore(args.runs_dir)


def _get(store, ref):
    from archlab.runs.store import RunNotFoundError

    try:
        return store.get(ref)
    except RunNotFoundError as e:
        raise UsageError(str(e)) from None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return "-" if v is None else str(v)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(r, widths)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_ls(args) -> int:
    records = _store(args).list(args.experiment, status=args.status, sort=args.sort,
                                descending=not args.ascending, limit=args.limit)
    if args.json:
        print(json.dumps([{**r.__dict__, "path": str(r.path)} for r in records]))
        return 0
    if not records:
        print("no runs" + (f" in experiment '{args.experiment}'" if args.experiment else ""))
        return 0
    cols = list(DEFAULT_COLUMNS)
    if args.sort and args.sort not in cols and args.sort not in ("created", "finished", "run_id"):
        cols.insert(0, args.sort)
    header = ["run_id", "experiment", "status", "model", "dataset", "seed", *cols]
    rows = [[r.run_id, r.experiment, r.status, _fmt(r.model), _fmt(r.dataset), _fmt(r.seed),
             *[_fmt(r.metrics.get(c)) for c in cols]] for r in records]
    print(table(header, rows))
    return 0


def run_show(args) -> int:
    r = _get(_store(args), args.run)
    print(f"run        {r.run_id}\nexperiment {r.experiment}\nstatus     {r.status}")
    print(f"created    {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created))}")
    print(f"path       {r.path}")
    if r.error:
        print(f"error      {r.error}")
    meta_path = r.path / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        git = meta.get("git", {})
        print(f"git        {git.get('sha')}{' (dirty)' if git.get('dirty') else ''}")
        print(f"device     {meta.get('device')} ({meta.get('precision')})")
    print("metrics")
    for k, v in sorted(r.metrics.items()):
        print(f"  {k:<16} {_fmt(v)}")
    config = r.path / "config.yaml"
    if config.exists():
        print("config\n  " + config.read_text().rstrip().replace("\n", "\n  "))
    return 0


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def run_compare(args) -> int:
    import yaml

    store = _store(args)
    records = [_get(store, ref) for ref in args.runs]
    configs = []
    for r in records:
        path = r.path / "config.yaml"
        configs.append(_flatten(yaml.safe_load(path.read_text())) if path.exists() else {})
    keys = sorted(set().union(*configs))
    differing = [k for k in keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    metric_keys = sorted(set().union(*(r.metrics for r in records)))
    header = ["", *[r.run_id for r in records]]
    rows = [[k, *[_fmt(r.metrics.get(k)) for r in records]] for k in metric_keys]
    rows += [[k, *[_fmt(c.get(k)) for c in configs]] for k in differing]
    print(table(header, rows))
    if not differing:
        print("(configs are identical)")
    return 0
