"""The leaderboard database: SQLite, one file, safe for several writers at once.

Durability and concurrency come from SQLite itself, used carefully:

* WAL journal, so readers (``show``, ``export``) never block writers and a killed process leaves at most an
  uncommitted tail of the WAL that the next opener ignores;
* every evaluation goes in with one ``BEGIN IMMEDIATE`` transaction (summary, metrics and token rows
  together), so the database holds all of an evaluation or none of it;
* ``BEGIN IMMEDIATE`` takes the write lock up front, so the "is it already there?" check and the insert
  cannot interleave with another writer's (no duplicate under a race, no deadlock on lock upgrade);
* a busy timeout plus an outer retry with jittered exponential backoff for the ``SQLITE_BUSY`` cases the busy
  handler does not cover.

Tables (``SCHEMA_VERSION`` 1) are described in ``leaderboard/README.md``.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar, Union

import pandas as pd

from irlvla_bench.errors import InputError

from .summary import METRICS, ROW_COLUMNS, STAGES, SUB_METRICS, Evaluation, load_evaluation

SCHEMA_VERSION = 1
DEFAULT_DB = Path("leaderboard.sqlite")
BUSY_TIMEOUT_S = 30.0

DB = Union[sqlite3.Connection, str, os.PathLike]
T = TypeVar("T")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    applied_utc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    id                INTEGER PRIMARY KEY,
    config_hash       TEXT NOT NULL,
    agent_name        TEXT NOT NULL,
    checkpoint_sha256 TEXT NOT NULL,      -- '' when the agent has no checkpoint
    git_commit        TEXT NOT NULL,      -- '' when unknown
    scorer_version    TEXT NOT NULL,
    split             TEXT NOT NULL,
    traffic           TEXT NOT NULL,
    aggregation       TEXT NOT NULL CHECK (aggregation IN ('one_stage', 'two_stage')),
    checkpoint        TEXT,
    seed              INTEGER NOT NULL,
    git_dirty         INTEGER NOT NULL,
    created_utc       TEXT NOT NULL,
    added_utc         TEXT NOT NULL,
    source_dir        TEXT NOT NULL,
    num_tokens        INTEGER NOT NULL,
    num_failed        INTEGER NOT NULL,
    epdms             REAL NOT NULL,
    summary_json      TEXT NOT NULL,
    -- '' instead of NULL above because SQLite treats NULLs as distinct in UNIQUE constraints.
    UNIQUE (config_hash, agent_name, checkpoint_sha256, git_commit)
);
CREATE INDEX IF NOT EXISTS evaluations_by_group ON evaluations (scorer_version, split, traffic);
CREATE TABLE IF NOT EXISTS metrics (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    stage         TEXT NOT NULL CHECK (stage IN {STAGES!r}),
    name          TEXT NOT NULL,
    value         REAL,                   -- NULL: undefined (extended comfort of a one-stage run)
    PRIMARY KEY (evaluation_id, stage, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_rows (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations (id) ON DELETE CASCADE,
    row           INTEGER NOT NULL,       -- position in rows.parquet
    token TEXT NOT NULL, log_name TEXT NOT NULL, frame_type TEXT NOT NULL, stage TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT NOT NULL,
    {", ".join(f"{m} REAL" for m in SUB_METRICS)},
    two_frame_extended_comfort REAL, multiplicative_metrics_prod REAL, score REAL, weight REAL,
    poses TEXT NOT NULL, seconds_agent REAL,
    PRIMARY KEY (evaluation_id, row)
);
CREATE INDEX IF NOT EXISTS token_rows_by_token ON token_rows (token, evaluation_id);
"""

# Columns of the ranking, in order; stage columns are always there (NaN for one-stage runs) so the shape of the
# table does not depend on what happens to be in the database.
ID_COLUMNS = ("rank", "agent", "checkpoint", "checkpoint_sha256", "git_commit", "git_dirty", "seed", "epdms")
FINAL_COLUMNS = SUB_METRICS + ("two_frame_extended_comfort",)
STAGE_COLUMNS = tuple(f"{stage}_{name}" for stage in ("stage_one", "stage_two") for name in METRICS)
TAIL_COLUMNS = ("num_tokens", "num_failed", "scorer_version", "split", "traffic", "aggregation", "config_hash",
                "created_utc", "evaluation_id", "source_dir")
RANKING_COLUMNS = ID_COLUMNS + FINAL_COLUMNS + STAGE_COLUMNS + TAIL_COLUMNS


class LeaderboardError(Exception):
    """The database cannot be used as asked (missing, foreign schema, locked for too long)."""


class MixedResultsError(LeaderboardError):
    """Results of different scorer versions, splits or traffic policies were about to be ranked together."""

    def __init__(self, combinations: Sequence[tuple[str, str, str, int]]):
        self.combinations = list(combinations)
        lines = [f"  --scorer-version {v} --split {s} --traffic {t}   ({n} evaluation{'s' * (n != 1)})"
                 for v, s, t, n in self.combinations]
        super().__init__(
            "refusing to rank together results of different scorer versions, splits or traffic policies; "
            f"{len(lines)} combinations match:\n" + "\n".join(lines)
            + "\nchoose one with --scorer-version/--split/--traffic (ranking(scorer_version=, split=, traffic=))")


@dataclass(frozen=True)
class Retry:
    """Backoff for SQLITE_BUSY beyond the busy timeout: attempts, first and longest sleep (seconds)."""

    attempts: int = 12
    first: float = 0.05
    longest: float = 2.0

    def sleep(self, attempt: int) -> None:
        # Full jitter: writers that collided once must not wake up in lockstep and collide again.
        time.sleep(random.uniform(0, min(self.longest, self.first * 2 ** attempt)))


@dataclass(frozen=True)
class AddResult:
    """What ``add`` did with one evaluation folder."""

    evaluation_id: int
    source: Path
    agent_name: str
    epdms: float
    added: bool        # False: the same evaluation (same key, same numbers) was already there


# ---------------------------------------------------------------------------------------------------------------
# Opening


def open_db(path: str | os.PathLike = DEFAULT_DB, *, create: bool = True,
            busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """Open (and with ``create`` make) a leaderboard database; the caller closes the connection."""
    path = Path(path)
    if not create and not path.is_file():
        raise LeaderboardError(f"{path}: no leaderboard database here; add evaluations first "
                               "(irlvla-bench leaderboard add DIR --db PATH)")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves; the module's implicit transactions would begin
    # DEFERRED and upgrade to a write lock mid-transaction, which is where SQLITE_BUSY deadlocks come from.
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL: a committed evaluation survives power loss too, at the price of one more fsync per add.
        conn.execute("PRAGMA synchronous = FULL")
        _retrying(conn, lambda: _set_wal(conn), Retry())
        _ensure_schema(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise LeaderboardError(f"{path}: not a usable SQLite database ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _set_wal(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode.lower() != "wal":
        raise LeaderboardError(f"the database refused WAL mode (journal_mode={mode}); is it on a network drive?")


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    def tables() -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def create(c: sqlite3.Connection) -> None:
        present = tables()
        if "schema_version" not in present:
            if present - {"evaluations", "metrics", "token_rows"}:
                raise LeaderboardError(f"{path}: a SQLite database that is not a leaderboard "
                                       f"(tables: {', '.join(sorted(present))})")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION, _now()))

    if "schema_version" not in tables():
        # Several processes may create the same new database at once; the write lock serialises them and the
        # second one finds the tables made.
        _transaction(conn, create)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    if versions != [SCHEMA_VERSION]:
        raise LeaderboardError(f"{path}: leaderboard schema version {versions}, this irlvla-bench reads "
                               f"version {SCHEMA_VERSION}")


@contextmanager
def connection(db: DB, *, create: bool = True) -> Iterator[sqlite3.Connection]:
    """Use an open connection as is, or open (and afterwards close) the database at a path."""
    if isinstance(db, sqlite3.Connection):
        yield db
        return
    conn = open_db(db, create=create)
    try:
        yield conn
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Transactions


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)  # & 0xFF: extended -> primary code
    return "locked" in str(exc) or "busy" in str(exc)


def _retrying(conn: sqlite3.Connection, attempt: Callable[[], T], retry: Retry) -> T:
    for n in range(retry.attempts):
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if n == retry.attempts - 1:
                raise LeaderboardError(f"the database stayed locked after {retry.attempts} attempts "
                                       f"({exc}); another process holds it") from exc
            retry.sleep(n)
    raise AssertionError("unreachable")


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T],
                 retry: Retry = Retry()) -> T:
    """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction, retried as a whole on SQLITE_BUSY."""

    def attempt() -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back by itself (e.g. on some I/O errors); only roll back what is open.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    return _retrying(conn, attempt, retry)


# ---------------------------------------------------------------------------------------------------------------
# Adding


def add_evaluation(db: DB, eval_dir: str | os.PathLike, *, allow_failed: bool = False) -> AddResult:
    """Validate ``eval_dir`` and store it; adding the same evaluation again changes nothing."""
    return add_evaluations(db, [eval_dir], allow_failed=allow_failed)[0]


def add_evaluations(db: DB, eval_dirs: Iterable[str | os.PathLike], *,
                    allow_failed: bool = False) -> list[AddResult]:
    """Validate every folder first, then store them all in one transaction (all or nothing)."""
    evaluations = [load_evaluation(d, allow_failed=allow_failed) for d in eval_dirs]
    return store_evaluations(db, evaluations)


def store_evaluations(db: DB, evaluations: Sequence[Evaluation]) -> list[AddResult]:
    """Store already validated evaluations in one transaction."""
    with connection(db) as conn:
        return _transaction(conn, lambda c: [_store_one(c, ev) for ev in evaluations])


def _store_one(conn: sqlite3.Connection, ev: Evaluation) -> AddResult:
    found = conn.execute(
        "SELECT id FROM evaluations WHERE config_hash = ? AND agent_name = ? AND checkpoint_sha256 = ? "
        "AND git_commit = ?", ev.key).fetchone()
    if found is not None:
        _check_same_numbers(conn, found[0], ev)
        return AddResult(found[0], ev.source, ev.agent_name, ev.epdms, added=False)
    evaluation_id = _insert_summary(conn, ev)
    _insert_metrics(conn, evaluation_id, ev)
    _insert_rows(conn, evaluation_id, ev)
    return AddResult(evaluation_id, ev.source, ev.agent_name, ev.epdms, added=True)


def _check_same_numbers(conn: sqlite3.Connection, evaluation_id: int, ev: Evaluation) -> None:
    """Same key but other numbers means a non-deterministic or dirty run: refuse rather than pick one silently."""
    stored = {(stage, name): value for stage, name, value in conn.execute(
        "SELECT stage, name, value FROM metrics WHERE evaluation_id = ?", (evaluation_id,))}
    new = {(stage, name): value for stage, block in ev.metrics.items() for name, value in block.items()}
    if stored != new:
        source = conn.execute("SELECT source_dir FROM evaluations WHERE id = ?", (evaluation_id,)).fetchone()[0]
        differing = sorted(f"{s}.{n}" for s, n in set(stored) | set(new) if stored.get((s, n)) != new.get((s, n)))
        raise InputError(str(ev.source / "summary.json"), "metrics",
                         f"the same evaluation (config_hash, agent, checkpoint, git commit) is already in the "
                         f"leaderboard as #{evaluation_id} (from {source}) with different numbers "
                         f"({', '.join(differing[:4])}{', ...' if len(differing) > 4 else ''}); "
                         "is the run non-deterministic or was the tree dirty?")


def _insert_summary(conn: sqlite3.Connection, ev: Evaluation) -> int:
    cursor = conn.execute(
        "INSERT INTO evaluations (config_hash, agent_name, checkpoint_sha256, git_commit, scorer_version, split, "
        "traffic, aggregation, checkpoint, seed, git_dirty, created_utc, added_utc, source_dir, num_tokens, "
        "num_failed, epdms, summary_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*ev.key, ev.scorer_version, ev.split, ev.traffic, ev.aggregation, ev.checkpoint, ev.seed,
         int(ev.git_dirty), ev.created_utc, _now(), str(ev.source), ev.num_tokens, ev.num_failed, ev.epdms,
         json.dumps(ev.summary, sort_keys=True, allow_nan=True)))
    return int(cursor.lastrowid)


def _insert_metrics(conn: sqlite3.Connection, evaluation_id: int, ev: Evaluation) -> None:
    conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)",
                     [(evaluation_id, stage, name, value)
                      for stage, block in ev.metrics.items() for name, value in block.items()])


def _insert_rows(conn: sqlite3.Connection, evaluation_id: int, ev: Evaluation) -> None:
    columns = ", ".join(ROW_COLUMNS)
    marks = ", ".join("?" * (len(ROW_COLUMNS) + 2))
    # SQLite stores a NaN REAL as NULL, which is what a failed token's metrics should read back as.
    records = ((evaluation_id, i, *row) for i, row in enumerate(ev.rows.itertuples(index=False, name=None)))
    conn.executemany(f"INSERT INTO token_rows (evaluation_id, row, {columns}) VALUES ({marks})", records)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------------------------
# Reading


def _filters(split: str | None, traffic: str | None, scorer_version: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    for column, value in (("split", split), ("traffic", traffic), ("scorer_version", scorer_version)):
        if value is not None:
            clauses.append(f"e.{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@contextmanager
def _snapshot(db: DB) -> Iterator[sqlite3.Connection]:
    """A read transaction: every query inside sees the same committed state (WAL snapshot), so a writer
    committing in between cannot make a check and the query that relies on it disagree."""
    with connection(db, create=False) as conn:
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("ROLLBACK")  # read-only: nothing to keep


def _combinations(conn: sqlite3.Connection, where: str, params: list[str]) -> list[tuple[str, str, str, int]]:
    return [tuple(r) for r in conn.execute(
        f"SELECT scorer_version, split, traffic, count(*) FROM evaluations e{where} "
        "GROUP BY scorer_version, split, traffic ORDER BY scorer_version, split, traffic", params)]


def combinations(db: DB, split: str | None = None, traffic: str | None = None,
                 scorer_version: str | None = None) -> list[tuple[str, str, str, int]]:
    """The (scorer_version, split, traffic, count) groups matching the filters."""
    with _snapshot(db) as conn:
        return _combinations(conn, *_filters(split, traffic, scorer_version))


def ranking(db: DB, split: str | None = None, traffic: str | None = None,
            scorer_version: str | None = None) -> pd.DataFrame:
    """Evaluations of one (scorer version, split, traffic) ranked by EPDMS, best first (``RANKING_COLUMNS``).

    Raises :class:`MixedResultsError` when the filters leave more than one such combination.
    """
    where, params = _filters(split, traffic, scorer_version)
    with _snapshot(db) as conn:
        groups = _combinations(conn, where, params)
        if len(groups) > 1:
            raise MixedResultsError(groups)
        evaluations = pd.read_sql_query(
            "SELECT id AS evaluation_id, agent_name AS agent, checkpoint, checkpoint_sha256, git_commit, git_dirty, "
            "seed, epdms, num_tokens, num_failed, scorer_version, split, traffic, aggregation, config_hash, "
            f"created_utc, source_dir FROM evaluations e{where}", conn, params=params)
        metrics = pd.read_sql_query(
            f"SELECT m.evaluation_id, m.stage, m.name, m.value FROM metrics m JOIN evaluations e "
            f"ON e.id = m.evaluation_id{where}", conn, params=params)
    for column in ("checkpoint_sha256", "git_commit"):
        evaluations[column] = evaluations[column].replace("", None)  # back from the UNIQUE-friendly ''
    evaluations["git_dirty"] = evaluations["git_dirty"].astype(bool)

    metrics["column"] = [name if stage == "final" else f"{stage}_{name}"
                         for stage, name in zip(metrics["stage"], metrics["name"])]
    wide = metrics[metrics["column"] != "score"].pivot(index="evaluation_id", columns="column", values="value")
    table = evaluations.merge(wide, left_on="evaluation_id", right_index=True, how="left")
    table = table.sort_values(["epdms", "created_utc", "evaluation_id"], ascending=[False, True, True])
    table.insert(0, "rank", table["epdms"].rank(method="min", ascending=False).astype(int))
    extra = sorted(set(table.columns) - set(RANKING_COLUMNS))   # metrics a newer runner added: kept, at the end
    table = table.reindex(columns=list(RANKING_COLUMNS) + extra)
    for column in FINAL_COLUMNS + STAGE_COLUMNS + tuple(extra):
        table[column] = table[column].astype(float)
    return table.reset_index(drop=True)


def token_rows(db: DB, evaluation_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Per-token rows (``evaluation_id``, ``row`` and the ``rows.parquet`` columns), for comparisons."""
    query = "SELECT * FROM token_rows"
    params: list[int] = []
    if evaluation_ids is not None:
        query += f" WHERE evaluation_id IN ({', '.join('?' * len(evaluation_ids))})"
        params = [int(i) for i in evaluation_ids]
    with connection(db, create=False) as conn:
        return pd.read_sql_query(query + " ORDER BY evaluation_id, row", conn, params=params)


def integrity_check(db: DB) -> list[str]:
    """SQLite's own integrity and foreign-key checks; an empty list means consistent."""
    with connection(db, create=False) as conn:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {tuple(r)}" for r in conn.execute("PRAGMA foreign_key_check")]
        return problems
