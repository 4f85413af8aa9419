"""RunStore: one directory per run plus an SQLite index for instant queries.

Layout: ``<root>/<experiment>/<run_id>/{config.yaml, meta.json, metrics.jsonl, checkpoints/,
artifacts/}`` and ``<root>/index.sqlite``. The index is a real SQLite file in WAL mode; every
write is one short ``BEGIN IMMEDIATE`` transaction with a generous busy timeout, so many
processes (study workers, DDP launches) can write to it at once.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from archlab.strict_json import strict_dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    seed INTEGER,
    model TEXT,
    dataset TEXT,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_experiment ON runs(experiment);
"""

STATUSES = ("running", "completed", "failed", "interrupted")


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    experiment: str
    status: str
    created: float
    finished: float | None
    seed: int | None
    model: str | None
    dataset: str | None
    path: Path
    metrics: dict[str, Any]
    error: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "RunRecord":
        d = dict(row)
        d["path"], d["metrics"] = Path(d["path"]), json.loads(d["metrics"])
        return cls(**d)


class RunNotFoundError(LookupError):
    pass


class RunStore:
    def __init__(self, root: str | Path = "runs") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index_path = self.root / "index.sqlite"
        with self._connect() as conn:
            conn.executescript(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.index_path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=60000")
        return conn

    def _write(self, sql: str, params: tuple) -> None:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, params)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()

    # ------------------------------------------------------------------ writing
    def create_run(self, experiment: str, *, seed: int | None = None, model: str | None = None,
                   dataset: str | None = None) -> RunRecord:
        check_experiment_name(experiment)
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        path = (self.root / experiment / run_id).resolve()
        for sub in ("checkpoints", "artifacts"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        created = time.time()
        self._write("INSERT INTO runs (run_id, experiment, status, created, seed, model, dataset, "
                    "path) VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
                    (run_id, experiment, created, seed, model, dataset, str(path)))
        return self.get(run_id)

    def update(self, run_id: str, *, status: str | None = None,
               metrics: dict[str, Any] | None = None, error: str | None = None) -> None:
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        sets, params = [], []
        if status is not None:
            sets += ["status = ?", "finished = ?"]
            params += [status, None if status == "running" else time.time()]
        if metrics is not None:
            sets.append("metrics = ?")
            params.append(strict_dumps(metrics))
        if error is not None:
            sets.append("error = ?")
            params.append(error)
        if sets:
            self._write(f"UPDATE runs SET {', '.join(sets)} WHERE run_id = ?", (*params, run_id))

    # ------------------------------------------------------------------ reading
    def get(self, ref: str | Path) -> RunRecord:
        """A run by id, unique id prefix, or run directory path."""
        ref_s = str(ref)
        conn = self._connect()
        try:
            candidate = Path(ref_s)
            if candidate.is_dir():
                rows = conn.execute("SELECT * FROM runs WHERE path = ?",
                                    (str(candidate.resolve()),)).fetchall()
                if not rows:
                    rows = conn.execute("SELECT * FROM runs WHERE run_id = ?",
                                        (candidate.resolve().name,)).fetchall()
            else:
                # A prefix look-up: LIKE's wildcards in the reference are literal characters.
                escaped = ref_s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                rows = conn.execute("SELECT * FROM runs WHERE run_id LIKE ? ESCAPE '\\' "
                                    "ORDER BY run_id", (escaped + "%",)).fetchall()
        finally:
            conn.close()
        if len(rows) == 1:
            return RunRecord.from_row(rows[0])
        if not rows and Path(ref_s).is_dir():
            # A run directory of another store (runs_dir/experiment/run_id, e.g. --runs-dir
            # elsewhere): its own index sits two levels up.
            home = Path(ref_s).resolve().parent.parent
            if (home / self.index_path.name).is_file() and home != self.root.resolve():
                return RunStore(home).get(Path(ref_s).resolve())
        if not rows:
            raise RunNotFoundError(f"no run '{ref_s}' in {self.index_path} "
                                   f"(list them with: archlab runs ls)")
        raise RunNotFoundError(f"'{ref_s}' matches {len(rows)} runs: "
                               f"{', '.join(r['run_id'] for r in rows[:5])}; give more of the id")

    def list(self, experiment: str | None = None, *, status: str | None = None,
             sort: str | None = None, descending: bool = True,
             limit: int | None = None) -> list[RunRecord]:
        where, params = [], []
        if experiment is not None:
            where.append("experiment = ?")
            params.append(experiment)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "")
        if sort:
            if sort in ("created", "finished", "run_id"):
                expr = sort
            else:
                # Metric keys contain dots ("val.acc"): quote them inside the JSON path.
                # Rows written before strict JSON may hold NaN/Infinity, which SQLite's JSON
                # functions reject: such a row sorts as if the metric were missing.
                expr = "(CASE WHEN json_valid(metrics) THEN json_extract(metrics, ?) END)"
                path = '$."' + sort.replace('"', "") + '"'
                params += [path, path]
            sql += f" ORDER BY {expr} IS NULL, {expr} {'DESC' if descending else 'ASC'}"
        else:
            sql += " ORDER BY created DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        conn = self._connect()
        try:
            return [RunRecord.from_row(r) for r in conn.execute(sql, params).fetchall()]
        finally:
            conn.close()

    def experiments(self) -> list[str]:
        conn = self._connect()
        try:
            return [r[0] for r in conn.execute("SELECT DISTINCT experiment FROM runs ORDER BY 1")]
        finally:
            conn.close()


def check_experiment_name(name: str) -> str:
    """An experiment name is one directory inside the runs directory: not empty, no path
    separators, not ``.``/``..``, no leading dot (hidden) — so it can never write elsewhere."""
    if (not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name
            or name in (".", "..") or name.startswith(".") or "\x00" in name):
        raise ValueError(f"experiment name {name!r} must be one plain directory name (letters, "
                         f"digits, '-', '_', ...: no '/', '\\', '..' or leading '.'), e.g. "
                         f"fashion_mnist_default")
    return name


def read_metrics(run_dir: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if path.exists():
        with path.open() as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
