"""archlab data ls | prepare NAME [KEY=VALUE ...]"""

from __future__ import annotations

from archlab.cli.runs_cmd import table


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list and prepare datasets")
    ds = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    ls = ds.add_parser("ls", help="registered datasets and where their files are")
    ls.set_defaults(handler=run_ls)
    prep = ds.add_parser("prepare", help="find or download (checksum-verified) a dataset",
                         description="Find NAME locally ($ARCHLAB_DATA, the user cache, system "
                         "copies) or download it from its official source, verify and parse it. "
                         "Text datasets are read, split and encoded, and their vocabulary and "
                         "token counts printed.")
    prep.add_argument("name", metavar="NAME")
    prep.add_argument("options", nargs="*", metavar="KEY=VALUE",
                      help="text datasets: builder options as in data.options, and val_fraction "
                      "as in data.val_fraction, e.g. path=notes.txt block_size=128 "
                      "val_fraction=0.05")
    prep.add_argument("--root", help="directory to use instead of the search path")
    prep.set_defaults(handler=run_prepare)


def _is_text(name: str) -> bool:
    from archlab.data import DATASETS

    return DATASETS.entry(name).meta.get("kind") == "text"


def run_ls(args) -> int:
    from archlab.data import DATASETS
    from archlab.data.download import describe_sources

    rows = []
    for info in describe_sources():
        locate = DATASETS.entry(info.name).meta.get("locate")  # text sources: found at run time
        location = locate() if locate is not None else info.location
        where = location or ("(downloadable)" if info.downloadable else "-")
        kind = "synthetic, tests only" if info.synthetic else info.description
        rows.append([info.name, where, kind])
    print(table(["name", "location", "description"], rows))
    return 0


def _options(pairs: list[str]) -> dict:
    from archlab.cli import parse_key_values

    return parse_key_values(pairs, "dataset option")


def run_prepare(args) -> int:
    from archlab.cli import UsageError
    from archlab.data import DATASETS
    from archlab.data.download import prepare

    DATASETS.get(args.name)  # unknown name -> usage error with close matches
    if _is_text(args.name):
        return _prepare_text(args)
    if args.options:
        raise UsageError(f"data prepare {args.name}: KEY=VALUE options are for text datasets "
                         "only")
    where = prepare(args.name, args.root)
    print(f"{args.name}: ready at {where}")
    return 0


def _prepare_text(args) -> int:
    from archlab.cli import UsageError
    from archlab.data import DATASETS
    from archlab.data._registry import as_path, check_dataset_options
    from archlab.data.idx import CorruptDataError

    options = _options(args.options)
    val_fraction = options.pop("val_fraction", 0.0)  # data.val_fraction, not a data.options key
    try:
        check_dataset_options(args.name, options)
        corpus = DATASETS.get(args.name)(root=as_path(args.root), download=True,
                                         val_fraction=val_fraction, **options)
    except CorruptDataError:  # a damaged file is a runtime failure, not a usage error
        raise
    except ValueError as e:  # an unknown option, a bad value, fractions that do not fit
        raise UsageError(f"data prepare {args.name}: {e}") from None
    vocab, extra = corpus.vocab, corpus.extra
    print(f"{args.name}: ready at {corpus.source}")
    print(f"vocab size  {len(vocab)} ({len(vocab.chars)} characters of the training split "
          f"+ <unk>)")
    print(f"block size  {corpus.block_size}")
    for split, n in corpus.split_tokens().items():
        if split == "val" and corpus.val is None:
            continue
        unknown = extra.get("unknown", {}).get(split, 0)
        chars = extra.get("unknown_chars", {}).get(split, "")
        note = f"  ({unknown:,} <unk>: {', '.join(map(repr, chars))})" if unknown else ""
        print(f"{split:<11} {n:,} tokens{note}")
    if "sha256" in extra:
        print(f"sha256      {extra['sha256']}")
    return 0
