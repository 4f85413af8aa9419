"""``archlab <command>``: one module per command, each with ``add_parser`` and ``run``.

Exit codes: 0 success, 1 runtime failure (a failed run, a corrupt file), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("train", "eval", "sample", "lr-find", "runs", "data", "models", "analyze", "profile",
            "study")
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line usage or configuration: exit status 2."""


def parse_key_values(pairs: list[str], what: str) -> dict:
    """``["k=v", ...]`` -> ``{k: v}`` with values parsed as YAML scalars/lists."""
    import yaml

    options = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} '{pair}' is not of the form KEY=VALUE")
        options[key] = yaml.safe_load(raw) if raw else ""
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archlab", description="Build, train, compare, inspect "
                                     "and ship neural architectures.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"archlab.cli.{name.replace('-', '_')}_cmd").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse exits with 2 on usage errors
    from archlab.runs.config import ConfigError
    from archlab.registry import UnknownNameError

    try:
        return args.handler(args) or EXIT_OK
    except (UsageError, ConfigError, UnknownNameError) as e:
        print(f"archlab {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"archlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # runtime failure: say what, not a traceback, unless asked
        if "--debug" in (argv or sys.argv):
            raise
        print(f"archlab {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILURE
