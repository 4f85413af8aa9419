"""RunStore on a real SQLite file, including concurrent writers in separate processes."""

import multiprocessing as mp
import sqlite3

import pytest

from archlab.runs.store import RunNotFoundError, RunStore, read_metrics
from archlab.train.callbacks.metric_logger import truncate_metrics


def test_create_update_get_and_sort_by_metric(tmp_path):
    store = RunStore(tmp_path)
    ids = []
    for i, acc in enumerate([0.5, 0.9, 0.7]):
        r = store.create_run("exp", seed=i, model="mlp", dataset="digits")
        store.update(r.run_id, status="completed", metrics={"val.acc": acc, "time_s": 10 - i})
        ids.append(r.run_id)
    store.create_run("other")
    assert [r.metrics["val.acc"] for r in store.list("exp", sort="val.acc")] == [0.9, 0.7, 0.5]
    assert [r.metrics["val.acc"] for r in store.list("exp", sort="val.acc", descending=False)] == \
        [0.5, 0.7, 0.9]
    assert len(store.list()) == 4 and store.experiments() == ["exp", "other"]
    assert len(store.list(status="running")) == 1
    got = store.get(ids[1])
    assert got.status == "completed" and got.seed == 1 and got.finished is not None
    assert store.get(got.path).run_id == ids[1]  # by directory too
    assert (got.path / "checkpoints").is_dir() and (got.path / "artifacts").is_dir()
    with pytest.raises(RunNotFoundError, match="archlab runs ls"):
        store.get("nope")
    # The index is a plain SQLite file any tool can read.
    rows = sqlite3.connect(tmp_path / "index.sqlite").execute("SELECT COUNT(*) FROM runs").fetchone()
    assert rows == (4,)


def test_ambiguous_prefix_is_an_error(tmp_path):
    store = RunStore(tmp_path)
    a, b = store.create_run("e"), store.create_run("e")
    common = a.run_id[:4]
    with pytest.raises(RunNotFoundError, match="matches 2 runs"):
        store.get(common)


def test_a_run_directory_of_another_store_is_found_through_its_own_index(tmp_path):
    elsewhere = RunStore(tmp_path / "elsewhere")
    run = elsewhere.create_run("exp", seed=3)
    default = RunStore(tmp_path / "runs")  # what a CLI without --runs-dir opens
    got = default.get(run.path)
    assert got.run_id == run.run_id and got.seed == 3 and got.path == run.path
    assert default.list() == []  # looked up, not copied into the other index
    stray = tmp_path / "runs" / "exp" / "not-a-run"
    stray.mkdir(parents=True)
    with pytest.raises(RunNotFoundError, match="no run"):
        default.get(stray)


def _writer(root, n, k):
    store = RunStore(root)
    for i in range(n):
        r = store.create_run(f"w{k}", seed=i)
        store.update(r.run_id, status="completed", metrics={"i": i})


def test_concurrent_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(tmp_path, 15, k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = RunStore(tmp_path)
    runs = store.list()
    assert len(runs) == 60 and all(r.status == "completed" for r in runs)
    assert sorted(r.metrics["i"] for r in store.list("w2")) == list(range(15))


def test_truncate_metrics_drops_later_and_torn_records(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 5}\n{"step": 9}\n{"st')
    truncate_metrics(tmp_path, 5)
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 5]
    (tmp_path / "other.jsonl").write_text('{"step": 2}\n{"step": 7}\n')
    truncate_metrics(tmp_path, 5, "other.jsonl")  # any step-keyed log of the run
    assert (tmp_path / "other.jsonl").read_text() == '{"step": 2}\n'
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 5]


def test_non_finite_metrics_are_strict_json_and_old_rows_do_not_break_sorting(tmp_path):
    """Issue 13.1: inf/nan metrics once wrote `Infinity` into the index and broke
    `runs ls --sort` for the whole store."""
    import json
    import math
    import sqlite3

    from archlab.strict_json import strict_dumps

    store = RunStore(tmp_path)
    bad, good, old = (store.create_run("e", seed=i, model="m", dataset="d") for i in range(3))
    store.update(bad.run_id, status="failed", metrics={"val.acc": 0.5, "train.loss": math.inf,
                                                       "val.loss": math.nan})
    store.update(good.run_id, status="completed", metrics={"val.acc": 0.9})
    # A row as an older archlab wrote it: Python's json with Infinity in it.
    with sqlite3.connect(store.index_path) as conn:
        conn.execute("UPDATE runs SET metrics = ? WHERE run_id = ?",
                     (json.dumps({"val.acc": 0.7, "train.loss": math.inf}), old.run_id))
    ranked = [r.run_id for r in store.list(sort="val.acc")]
    assert ranked == [good.run_id, bad.run_id, old.run_id]  # the unreadable row sorts last
    record = store.get(bad.run_id)
    assert record.metrics["train.loss"] is None and record.metrics["val.acc"] == 0.5
    assert record.metrics["nonfinite"] == {"train.loss": "inf", "val.loss": "nan"}
    assert math.isinf(store.get(old.run_id).metrics["train.loss"])  # old rows still read
    # What is written parses under the strictest reader.
    def refuse(constant):
        raise ValueError(constant)
    text = strict_dumps({"a": [1.0, -math.inf], "b": {"c": math.nan}})
    assert json.loads(text, parse_constant=refuse) == {
        "a": [1.0, None], "b": {"c": None}, "nonfinite": {"a[1]": "-inf", "b.c": "nan"}}


def test_metric_log_lines_are_strict_json(tmp_path):
    import json
    import math

    from archlab.train.callbacks.metric_logger import MetricLogger

    logger = MetricLogger(tmp_path / "metrics.jsonl")
    logger._write({"step": 3, "train.loss": math.nan})
    line = (tmp_path / "metrics.jsonl").read_text().strip()
    record = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert record == {"step": 3, "train.loss": None, "nonfinite": {"train.loss": "nan"}}


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "a/b", "..", ".", "", ".hidden", "a\\b"])
def test_experiment_names_cannot_leave_the_runs_directory(tmp_path, name):
    """Issue 13.2: experiment=../x or an absolute path wrote outside the runs directory."""
    from archlab.runs.config import ConfigError, load_config

    with pytest.raises(ValueError, match="plain directory name"):
        RunStore(tmp_path / "runs").create_run(name)
    with pytest.raises(ConfigError, match="experiment"):
        load_config(None, [f"experiment={name!r}" if name else "experiment=''"])
    assert not (tmp_path / "x").exists() and sorted(tmp_path.iterdir()) == [tmp_path / "runs"]


def test_run_reference_wildcards_are_literal(tmp_path):
    """Issue 13.2: `archlab eval _` picked a run: '_' and '%' were LIKE wildcards."""
    store = RunStore(tmp_path)
    run = store.create_run("e")
    for ref in ("_", "%", run.run_id[:3] + "_"):
        with pytest.raises(RunNotFoundError):
            store.get(ref)
    assert store.get(run.run_id[:10]).run_id == run.run_id
