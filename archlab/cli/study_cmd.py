"""archlab study run STUDY.yaml [--quick] [--jobs N] | report DIR | ls"""

from __future__ import annotations

import sys
from pathlib import Path

from archlab.cli import EXIT_FAILURE, EXIT_OK, UsageError

#: Built-in studies ship in the repository's studies/ folder.
BUILTIN_DIR = Path(__file__).resolve().parents[2] / "studies"


def add_parser(sub) -> None:
    p = sub.add_parser("study", help="run a grid of configurations × seeds and report it",
                       description="Studies: every trial is a normal run in the run store; the "
                       "report aggregates over seeds (mean ± std, t intervals, Welch tests).")
    ss = p.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)
    run = ss.add_parser("run", help="run (or resume) a study, then write its report",
                        description="Run every trial not already finished, then write "
                        "report.md / report.html / CSV / JSON into the study directory "
                        "(<runs-dir>/studies/<name>[-quick]).")
    run.add_argument("study", metavar="STUDY.yaml",
                     help="a study file, or the name of a built-in study (archlab study ls)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                     help="config overrides for every trial, applied after the study's own "
                     "(quick mode's included), e.g. train.device=cuda data.num_workers=8")
    run.add_argument("--seeds", type=int, nargs="+", metavar="SEED",
                     help="seeds to run instead of the study's (e.g. --seeds 0 1 2 3 4)")
    run.add_argument("--quick", action="store_true",
                     help="the study's quick settings: a smoke run in minutes, said in the report")
    run.add_argument("--jobs", "-j", type=int, default=1, help="worker processes (default 1)")
    run.add_argument("--retry-failed", action="store_true",
                     help="run failed trials again (default: keep them as results)")
    run.add_argument("--no-report", action="store_true", help="run the trials only")
    run.add_argument("--runs-dir", default="runs", help="run store (default: runs)")
    run.set_defaults(handler=run_run)
    report = ss.add_parser("report", help="re-aggregate a study directory and write its report")
    report.add_argument("dir", metavar="DIR",
                        help="study directory, or a study name under <runs-dir>/studies")
    report.add_argument("--out", help="write the report here instead of the study directory")
    report.add_argument("--runs-dir", default="runs")
    report.set_defaults(handler=run_report)
    ls = ss.add_parser("ls", help="list built-in studies and the study directories in the store")
    ls.add_argument("--runs-dir", default="runs")
    ls.set_defaults(handler=run_ls)


def _study_file(ref: str) -> Path:
    path = Path(ref)
    if path.is_file():
        return path
    builtin = BUILTIN_DIR / f"{ref}.yaml"
    if path.suffix == "" and builtin.is_file():
        return builtin
    known = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))) or "none"
    raise UsageError(f"study file not found: {ref} (built-in studies: {known})")


def run_run(args) -> int:
    from archlab.studies import aggregate_study, load_study, run_study, write_report

    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}")
    path = _study_file(args.study)
    study = load_study(path)
    # Rebuilt from the parsed arguments (main() may be called with an argv of its own).
    command = ["archlab", "study", "run", args.study, *args.overrides,
               *(["--seeds", *map(str, args.seeds)] if args.seeds else []),
               *(["--quick"] if args.quick else []),
               *([f"--jobs={args.jobs}"] if args.jobs != 1 else []),
               *(["--retry-failed"] if args.retry_failed else []),
               *([f"--runs-dir={args.runs_dir}"] if args.runs_dir != "runs" else [])]
    outcome = run_study(study, runs_dir=args.runs_dir, quick=args.quick, jobs=args.jobs,
                        study_file=path, retry_failed=args.retry_failed, command=command,
                        overrides=args.overrides, seeds=args.seeds)
    if not args.no_report:
        files = write_report(aggregate_study(outcome.study_dir), report_command=command)
        print(f"report: {files.markdown}\n        {files.html}")
    if outcome.failed:
        print(f"{len(outcome.failed)} trial(s) failed: {', '.join(outcome.failed)} (errors in "
              f"{outcome.study_dir / 'trials.json'} and the report)", file=sys.stderr)
    if outcome.interrupted:
        print(f"{len(outcome.interrupted)} trial(s) were cut off; run the same command again to "
              f"finish them", file=sys.stderr)
        return EXIT_FAILURE
    if outcome.failed and not outcome.ran and not outcome.skipped:
        return EXIT_FAILURE  # nothing worked: not a study result, a broken setup
    return EXIT_OK


def _study_dir(args) -> Path:
    path = Path(args.dir)
    if path.is_dir():
        return path
    candidate = Path(args.runs_dir) / "studies" / args.dir
    if candidate.is_dir():
        return candidate
    raise UsageError(f"no study directory '{args.dir}' (nor {candidate}); list them with "
                     f"`archlab study ls`")


def run_report(args) -> int:
    from archlab.studies import aggregate_study, write_report

    study_dir = _study_dir(args)
    try:
        results = aggregate_study(study_dir)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    command = ["archlab", "study", "report", args.dir, *([f"--out={args.out}"] if args.out else []),
               *([f"--runs-dir={args.runs_dir}"] if args.runs_dir != "runs" else [])]
    files = write_report(results, args.out, report_command=command)
    print(f"report: {files.markdown}\n        {files.html}")
    return EXIT_OK


def _headline(description: str, width: int = 100) -> str:
    """What a study compares: its description up to the first ': ' (the list of what it
    reports follows), cut at a word with '…' when still too long for one table row."""
    text = " ".join(description.split()).split(": ")[0]
    if len(text) <= width:
        return text
    return text[:width - 1].rsplit(" ", 1)[0].rstrip(",;") + "…"


def run_ls(args) -> int:
    import yaml

    from archlab.cli.runs_cmd import table
    from archlab.studies.runner import read_ledger

    builtin = sorted(BUILTIN_DIR.glob("*.yaml"))
    rows = []
    for path in builtin:
        try:
            description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        except yaml.YAMLError:
            description = "(invalid YAML)"
        rows.append([path.stem, _headline(str(description))])
    print(table(["built-in study", "description"], rows) if rows else "no built-in studies")
    root = Path(args.runs_dir) / "studies"
    dirs = sorted(d for d in root.glob("*") if (d / "trials.json").exists()) \
        if root.is_dir() else []
    if dirs:
        rows = []
        for d in dirs:
            statuses = [e.get("status") for e in read_ledger(d)["trials"].values()]
            counts = {s: statuses.count(s) for s in dict.fromkeys(statuses)}
            rows.append([str(d), str(len(statuses)),
                         ", ".join(f"{n} {s}" for s, n in counts.items()),
                         "yes" if (d / "report.html").exists() else "no"])
        print()
        print(table(["study directory", "trials", "status", "report"], rows))
    return EXIT_OK
