"""archlab data ls | prepare NAME"""

from __future__ import annotations

from archlab.cli.runs_cmd import table


def add_parser(sub) -> None:
    p = sub.add_parser("data", help="list and prepare datasets")
    ds = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    ls = ds.add_parser("ls", help="registered datasets and where their files are")
    ls.set_defaults(handler=run_ls)
    prep = ds.add_parser("prepare", help="find or download (checksum-verified) a dataset",
                         description="Find NAME locally ($ARCHLAB_DATA, the user cache, system "
                         "copies) or download it from its official source, verify and parse it.")
    prep.add_argument("name", metavar="NAME")
    prep.add_argument("--root", help="directory to use instead of the search path")
    prep.set_defaults(handler=run_prepare)


def run_ls(args) -> int:
    from archlab.data.download import describe_sources

    rows = []
    for info in describe_sources():
        where = info.location or ("(downloadable)" if info.downloadable else "-")
        kind = "synthetic, tests only" if info.synthetic else info.description
        rows.append([info.name, where, kind])
    print(table(["name", "location", "description"], rows))
    return 0


def run_prepare(args) -> int:
    from archlab.data import DATASETS
    from archlab.data.download import prepare

    DATASETS.get(args.name)  # unknown name -> usage error with close matches
    where = prepare(args.name, args.root)
    print(f"{args.name}: ready at {where}")
    return 0
