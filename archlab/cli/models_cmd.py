"""archlab models ls [PATTERN] | info NAME [KEY=VALUE ...]"""

from __future__ import annotations

from archlab.cli.runs_cmd import table


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list registered models and describe one")
    ms = p.add_subparsers(dest="models_command", metavar="SUBCOMMAND", required=True)
    ls = ms.add_parser("ls", help="list models matching a wildcard pattern")
    ls.add_argument("pattern", nargs="?", default="*", help="e.g. 'resnet*'")
    ls.add_argument("--family")
    ls.add_argument("--cost", action="store_true",
                    help="also count parameters and FLOPs (builds every listed model)")
    ls.set_defaults(handler=run_ls)
    info = ms.add_parser("info", help="parameters, FLOPs, input size, family and paper")
    info.add_argument("name", metavar="NAME")
    info.add_argument("options", nargs="*", metavar="KEY=VALUE",
                      help="builder options as in model.options, e.g. block=separable in_chans=3")
    info.set_defaults(handler=run_info)


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def run_ls(args) -> int:
    from archlab.models import MODELS, list_models, model_info

    names = list_models(args.pattern, family=args.family)
    if not names:
        print(f"no model matches '{args.pattern}'")
        return 0
    rows = []
    for name in names:
        meta = MODELS.entry(name).meta
        row = [name, meta.get("family", ""), meta.get("task", "classification")]
        if args.cost:
            info = model_info(name)
            row += [_human(info.params), _human(info.flops), "x".join(map(str, info.input_size))]
        rows.append(row)
    header = ["name", "family", "task"] + (["params", "FLOPs", "input"] if args.cost else [])
    print(table(header, rows))
    return 0


def _options(pairs: list[str]) -> dict:
    from archlab.cli import parse_key_values

    return parse_key_values(pairs, "model option")


def run_info(args) -> int:
    from archlab.cli import UsageError
    from archlab.models import MODELS, model_info

    MODELS.get(args.name)
    options = _options(args.options)
    try:
        info = model_info(args.name, **options)
    except (TypeError, ValueError) as e:  # an option the builder does not take, a bad value
        raise UsageError(f"models info {args.name}: {e}") from None
    if options:
        print("options     " + " ".join(f"{k}={v}" for k, v in options.items()))
    print(f"name        {info.name}\nfamily      {info.family}\npaper       {info.paper or '-'}")
    print(f"params      {info.params:,} ({_human(info.params)})")
    print(f"FLOPs       {info.flops:,} ({_human(info.flops)}) per image at "
          f"{'x'.join(map(str, info.input_size))}")
    print(f"MACs        {info.flops // 2:,}")
    doc = (MODELS.get(args.name).__doc__ or "").strip()
    if doc:
        print(f"about       {doc.splitlines()[0]}")
    return 0
