"""Leaderboard: validation of evaluation folders, ranking, refusal to mix, idempotence, exports, CLI, and the
acceptance checks (four concurrent writers lose no row; a writer killed mid-transaction leaves it consistent)."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import multiprocessing
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from irlvla_bench.errors import InputError
from leaderboard import store
from leaderboard.cli import app
from leaderboard.export import to_html, to_markdown, write_csv, write_html, write_markdown
from leaderboard.store import (LeaderboardError, MixedResultsError, add_evaluation, add_evaluations,
                               integrity_check, open_db, ranking, token_rows)
from leaderboard.summary import METRICS, SUB_METRICS

FORK = multiprocessing.get_context("fork")


# ---------------------------------------------------------------------------------------------------------------
# Fake evaluation folders that follow docs/evaluation-schema.md, with known numbers


def _stage_block(epdms: float, offset: float, *, one_stage: bool = False) -> dict:
    """Sub-metric k is epdms + offset - k/100 (distinct, known values); score is epdms + offset."""
    block = {m: round(epdms + offset - k / 100, 6) for k, m in enumerate(SUB_METRICS)}
    block["two_frame_extended_comfort"] = float("nan") if one_stage else round(epdms + offset - 0.005, 6)
    block["score"] = round(epdms + offset, 6)
    return block


def write_evaluation(root: Path, name: str, *, agent: str | None = None, epdms: float = 0.8,
                     split: str = "navhard_two_stage", traffic: str = "log_replay", scorer_version: str = "scorer-1",
                     aggregation: str = "two_stage", checkpoint_sha256: str | None = None,
                     git_commit: str | None = "0123456789abcdef", seed: int = 0, num_tokens: int = 6,
                     num_failed: int = 0, rows_format: str = "both", summary_edit=None) -> Path:
    """Write ``root/name`` with summary.json and rows (parquet and/or CSV) whose numbers are known."""
    folder = root / name
    folder.mkdir(parents=True)
    agent = agent or name
    one_stage = aggregation == "one_stage"
    config = {"split": split, "traffic": traffic, "agent": agent, "seed": seed, "scorer": scorer_version,
              "checkpoint": checkpoint_sha256}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    failed = [{"token": f"{name}-t{i}", "log_name": "log-a", "error": "RuntimeError: boom",
               "traceback": "Traceback ..."} for i in range(num_failed)]
    summary = {
        "schema": "irlvla-evaluation/v1", "scorer_version": scorer_version, "split": split,
        "aggregation": aggregation, "traffic": traffic,
        "agent": {"name": agent, "checkpoint": f"/ckpt/{agent}.pt" if checkpoint_sha256 else None,
                  "checkpoint_sha256": checkpoint_sha256},
        "seed": seed, "config_hash": config_hash, "git_commit": git_commit, "git_dirty": False,
        "versions": {"python": "3.11", "numpy": "2", "numba": "0.6", "irlvla_bench": "0.1.0", "torch": None},
        "data_root": "/data", "cache_dir": "/cache", "created_utc": "2025-01-02T03:04:05+00:00",
        "num_tokens": num_tokens, "num_failed": num_failed, "failed": failed,
        "metrics": _stage_block(epdms, 0.0, one_stage=one_stage),
        "stage_one": None if one_stage else _stage_block(epdms, 0.05),
        "stage_two": None if one_stage else _stage_block(epdms, -0.05),
        "epdms": round(epdms, 6),
    }
    if summary_edit is not None:
        summary_edit(summary)
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))

    rows = []
    for i in range(num_tokens):
        bad = i < num_failed
        second = not one_stage and i >= num_tokens // 2
        value = float("nan") if bad else round(epdms, 6)
        rows.append({"token": f"{name}-t{i}", "log_name": "log-a", "frame_type": "synthetic" if second else "original",
                     "stage": "second" if second else "first", "status": "failed" if bad else "ok",
                     "error": "RuntimeError: boom" if bad else "",
                     **{m: value for m in SUB_METRICS},
                     "two_frame_extended_comfort": float("nan") if one_stage or bad else 1.0,
                     "multiplicative_metrics_prod": value, "score": value, "weight": 0.5 if second else 1.0,
                     "poses": json.dumps([[0.5 * k, 0.0, 0.0] for k in range(1, 9)]), "seconds_agent": 0.001 * i})
    table = pd.DataFrame(rows)
    if rows_format in ("both", "parquet"):
        table.to_parquet(folder / "rows.parquet", index=False)
    if rows_format in ("both", "csv"):
        table.to_csv(folder / "rows.csv", index=False)
    return folder


def _counts(db: Path) -> tuple[int, int, int]:
    with sqlite3.connect(db) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                     for t in ("evaluations", "metrics", "token_rows"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "lb.sqlite"


# ---------------------------------------------------------------------------------------------------------------
# Ranking


def test_ranking_order_and_numbers(tmp_path: Path, db: Path):
    for name, epdms in (("mid", 0.8), ("best", 0.9), ("worst", 0.7)):
        add_evaluation(db, write_evaluation(tmp_path, name, epdms=epdms))
    table = ranking(db)
    assert list(table["agent"]) == ["best", "mid", "worst"]
    assert list(table["rank"]) == [1, 2, 3]
    assert list(table.columns[:len(store.RANKING_COLUMNS)]) == list(store.RANKING_COLUMNS)
    best = table.iloc[0]
    assert best["epdms"] == 0.9
    for k, metric in enumerate(SUB_METRICS):
        assert best[metric] == pytest.approx(0.9 - k / 100)
        assert best[f"stage_one_{metric}"] == pytest.approx(0.95 - k / 100)
        assert best[f"stage_two_{metric}"] == pytest.approx(0.85 - k / 100)
    assert best["two_frame_extended_comfort"] == pytest.approx(0.895)
    assert best["stage_one_score"] == pytest.approx(0.95) and best["stage_two_score"] == pytest.approx(0.85)
    assert pd.isna(best["checkpoint_sha256"]) and pd.isna(best["checkpoint"])
    assert best["git_commit"] == "0123456789abcdef"
    assert table["num_tokens"].tolist() == [6, 6, 6]


def test_ties_share_a_rank_and_one_stage_has_no_stages(tmp_path: Path, db: Path):
    kw = dict(aggregation="one_stage", split="navtest")
    add_evaluations(db, [write_evaluation(tmp_path, name, epdms=epdms, **kw)
                         for name, epdms in (("a", 0.6), ("b", 0.6), ("c", 0.5))])
    table = ranking(db)
    assert list(table["rank"]) == [1, 1, 3]
    assert table["stage_one_score"].isna().all() and table["two_frame_extended_comfort"].isna().all()


def test_empty_ranking_has_the_columns(db: Path):
    open_db(db).close()
    table = ranking(db)
    assert table.empty and list(table.columns) == list(store.RANKING_COLUMNS)


@pytest.mark.parametrize("field, values", [("scorer_version", ("scorer-1", "scorer-2")),
                                           ("split", ("navhard_two_stage", "navhard_b")),
                                           ("traffic", ("log_replay", "idm"))])
def test_refuses_to_mix_versions_splits_traffic(tmp_path: Path, db: Path, field: str, values):
    for k, value in enumerate(values):
        add_evaluation(db, write_evaluation(tmp_path, f"agent{k}", epdms=0.5 + k / 10, **{field: value}))
    with pytest.raises(MixedResultsError) as info:
        ranking(db)
    message = str(info.value)
    assert "refusing to rank together" in message
    for value in values:
        assert value in message
    assert "--scorer-version scorer-1" in message and "--traffic" in message and "--split" in message
    assert len(info.value.combinations) == 2
    # Choosing one combination ranks it.
    chosen = ranking(db, **{field: values[1]})
    assert list(chosen["agent"]) == ["agent1"]


# ---------------------------------------------------------------------------------------------------------------
# Adding: idempotence, validation


def test_add_is_idempotent(tmp_path: Path, db: Path):
    folder = write_evaluation(tmp_path, "cv", epdms=0.7)
    first = add_evaluation(db, folder)
    counts = _counts(db)
    assert first.added and counts == (1, 30, 6)   # 10 metrics x 3 stages, 6 tokens
    again = add_evaluation(db, folder)
    assert not again.added and again.evaluation_id == first.evaluation_id
    copy = shutil.copytree(folder, tmp_path / "copy")   # the same run found elsewhere is the same evaluation
    assert not add_evaluation(db, copy).added
    assert _counts(db) == counts
    # A new checkpoint or commit is a new evaluation.
    add_evaluation(db, write_evaluation(tmp_path, "cv2", agent="cv", epdms=0.7, git_commit="fedcba9876"))
    assert _counts(db)[0] == 2


def test_same_key_with_other_numbers_is_refused(tmp_path: Path, db: Path):
    folder = write_evaluation(tmp_path, "cv", epdms=0.7)
    add_evaluation(db, folder)
    summary = json.loads((folder / "summary.json").read_text())
    summary["metrics"]["ego_progress"] = 0.1
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(InputError) as info:
        add_evaluation(db, folder)
    assert info.value.field == "metrics" and "final.ego_progress" in info.value.problem
    assert _counts(db)[0] == 1


def _drop(*path):
    def edit(summary):
        node = summary
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    return edit


def _set(value, *path):
    def edit(summary):
        node = summary
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return edit


@pytest.mark.parametrize("edit, field, words", [
    (_set("irlvla-evaluation/v0", "schema"), "schema", "expected 'irlvla-evaluation/v1'"),
    (_drop("split"), "split", "missing"),
    (_set("", "scorer_version"), "scorer_version", "non-empty string"),
    (_set("three_stage", "aggregation"), "aggregation", "one_stage, two_stage"),
    (_set("x", "agent"), "agent", "expected an object"),
    (_drop("agent", "name"), "agent.name", "missing"),
    (_set("not-hex", "agent", "checkpoint_sha256"), "agent.checkpoint_sha256", "sha256"),
    (_set("abc", "config_hash"), "config_hash", "sha256"),
    (_set(True, "seed"), "seed", "integer"),
    (_set("yesterday", "created_utc"), "created_utc", "ISO 8601"),
    (_set(-1, "num_tokens"), "num_tokens", ">= 0"),
    (_drop("metrics", "lane_keeping"), "metrics.lane_keeping", "missing"),
    (_set(1.5, "metrics", "ego_progress"), "metrics.ego_progress", "[0, 1]"),
    (_set("0.9", "metrics", "score"), "metrics.score", "expected a number"),
    (_set(None, "metrics", "history_comfort"), "metrics.history_comfort", "null/NaN"),
    (_set(None, "stage_two"), "stage_two", "expected an object"),
    (_set(0.1, "epdms"), "epdms", "differs from metrics.score"),
    (_set("x", "metrics", "extra_metric"), "metrics.extra_metric", "number or null"),
])
def test_bad_summary_names_file_and_field(tmp_path: Path, db: Path, edit, field, words):
    folder = write_evaluation(tmp_path, "bad", summary_edit=edit)
    with pytest.raises(InputError) as info:
        add_evaluation(db, folder)
    assert info.value.source == str(folder / "summary.json")
    assert info.value.field == field
    assert words in info.value.problem
    assert str(info.value).startswith(f"{folder / 'summary.json'}: {field}: ")
    assert not db.exists() or _counts(db)[0] == 0


def test_unreadable_and_inconsistent_folders(tmp_path: Path, db: Path):
    with pytest.raises(InputError, match="not a folder"):
        add_evaluation(db, tmp_path / "nowhere")
    folder = write_evaluation(tmp_path, "a")
    (folder / "summary.json").write_text("{not json")
    with pytest.raises(InputError, match="summary.json: -: not valid JSON"):
        add_evaluation(db, folder)
    folder = write_evaluation(tmp_path, "b", summary_edit=_set(7, "num_tokens"))
    with pytest.raises(InputError, match=r"rows.parquet: -: 6 rows but summary.json says num_tokens=7"):
        add_evaluation(db, folder)
    folder = write_evaluation(tmp_path, "c", rows_format="parquet")
    (folder / "rows.parquet").unlink()
    with pytest.raises(InputError, match=r"rows.parquet: -: missing \(and no rows.csv either\)"):
        add_evaluation(db, folder)
    folder = write_evaluation(tmp_path, "d", rows_format="csv")
    table = pd.read_csv(folder / "rows.csv").drop(columns=["lane_keeping"])
    table.to_csv(folder / "rows.csv", index=False)
    with pytest.raises(InputError, match=r"rows.csv: lane_keeping: missing column"):
        add_evaluation(db, folder)
    folder = write_evaluation(tmp_path, "e", rows_format="csv")
    table = pd.read_csv(folder / "rows.csv", keep_default_na=False)
    table.loc[0, "stage"] = "third"
    table.to_csv(folder / "rows.csv", index=False)
    with pytest.raises(InputError, match=r"rows.csv: stage: unexpected values \['third'\]"):
        add_evaluation(db, folder)


def test_failed_tokens_need_allow_failed(tmp_path: Path, db: Path):
    folder = write_evaluation(tmp_path, "flaky", num_failed=2)
    with pytest.raises(InputError) as info:
        add_evaluation(db, folder)
    assert info.value.field == "num_failed" and "--allow-failed" in info.value.problem
    assert "flaky-t0" in info.value.problem
    result = add_evaluation(db, folder, allow_failed=True)
    assert result.added
    assert ranking(db)["num_failed"].tolist() == [2]
    rows = token_rows(db, [result.evaluation_id])
    failed = rows[rows["status"] == "failed"]
    assert len(failed) == 2 and failed["score"].isna().all() and (failed["error"] == "RuntimeError: boom").all()


def test_csv_rows_read_like_parquet(tmp_path: Path, db: Path):
    a = add_evaluation(db, write_evaluation(tmp_path, "pq", rows_format="parquet", num_failed=1),
                       allow_failed=True)
    b = add_evaluation(db, write_evaluation(tmp_path, "cs", rows_format="csv", num_failed=1), allow_failed=True)
    rows = token_rows(db)
    left, right = (rows[rows["evaluation_id"] == r.evaluation_id].drop(columns=["evaluation_id", "token"])
                   .reset_index(drop=True) for r in (a, b))
    pd.testing.assert_frame_equal(left, right)
    assert (left["error"].iloc[1:] == "").all()   # an empty error stays "", not NaN
    assert json.loads(left["poses"].iloc[0])[0] == [0.5, 0.0, 0.0]


def test_foreign_or_missing_database(tmp_path: Path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    with pytest.raises(LeaderboardError, match="not a leaderboard"):
        open_db(other)
    with pytest.raises(LeaderboardError, match="no leaderboard database"):
        ranking(tmp_path / "absent.sqlite")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LeaderboardError, match="not a usable SQLite database"):
        open_db(garbage)


def test_database_settings(db: Path):
    conn = open_db(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(store.SCHEMA_VERSION,)]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------------------
# Acceptance: concurrent writers, killed writers


def _writer(db: str, folders: list[str], barrier) -> None:
    barrier.wait()   # all four start adding at the same moment
    for folder in folders:
        add_evaluation(db, folder)


def test_four_concurrent_writers_lose_no_row(tmp_path: Path, db: Path):
    per_process, tokens = 6, 40
    shared = write_evaluation(tmp_path, "shared", epdms=0.5, num_tokens=tokens)   # every process adds this one too
    plan = [[str(write_evaluation(tmp_path, f"p{p}-e{e}", epdms=0.3 + 0.02 * e + 0.001 * p, num_tokens=tokens))
             for e in range(per_process)] for p in range(4)]
    for p, folders in enumerate(plan):
        folders.insert(p % per_process, str(shared))
    barrier = FORK.Barrier(4)
    workers = [FORK.Process(target=_writer, args=(str(db), folders, barrier)) for folders in plan]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    evaluations = 4 * per_process + 1
    assert _counts(db) == (evaluations, evaluations * 30, evaluations * tokens)
    assert integrity_check(db) == []
    table = ranking(db)
    assert len(table) == evaluations and table["agent"].is_unique
    assert table["epdms"].is_monotonic_decreasing


def _add_then_die(db: str, folder: str, how: str, ready) -> None:
    """Add ``folder`` but die half-way through the token rows, inside the open transaction."""
    original = store._insert_rows

    def dying_insert_rows(conn, evaluation_id, ev):
        half = ev.rows.iloc[: len(ev.rows) // 2]
        original(conn, evaluation_id, type(ev)(**{**ev.__dict__, "rows": half}))
        assert conn.in_transaction
        if how == "exit":
            os._exit(17)                   # no cleanup, no rollback, no atexit
        ready.set()                        # the parent SIGKILLs us now, mid-transaction
        signal.pause()

    store._insert_rows = dying_insert_rows
    add_evaluation(db, folder)


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_killed_writer_leaves_database_consistent(tmp_path: Path, db: Path, how: str):
    kept = add_evaluation(db, write_evaluation(tmp_path, "kept", epdms=0.6, num_tokens=10))
    victim = write_evaluation(tmp_path, "victim", epdms=0.9, num_tokens=200)
    ready = FORK.Event()
    child = FORK.Process(target=_add_then_die, args=(str(db), str(victim), how, ready))
    child.start()
    if how == "sigkill":
        assert ready.wait(timeout=60), "child never reached the middle of its transaction"
        with sqlite3.connect(db, timeout=0.1) as conn:
            # The writer holds the write lock: a second writer cannot start, while readers see the old state.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                conn.execute("BEGIN IMMEDIATE")
            assert conn.execute("SELECT count(*) FROM evaluations").fetchone()[0] == 1
        os.kill(child.pid, signal.SIGKILL)
    child.join(timeout=60)
    assert child.exitcode == (17 if how == "exit" else -signal.SIGKILL)

    assert integrity_check(db) == []
    assert _counts(db) == (1, 30, 10)      # the victim is not there at all: no summary, no half of its rows
    assert ranking(db)["agent"].tolist() == ["kept"]
    assert token_rows(db)["evaluation_id"].unique().tolist() == [kept.evaluation_id]
    again = add_evaluation(db, victim)      # and the database takes writes again
    assert again.added and _counts(db) == (2, 60, 210)


# ---------------------------------------------------------------------------------------------------------------
# Exports


def _three(tmp_path: Path, db: Path) -> pd.DataFrame:
    for name, epdms in (("constant_velocity", 0.55), ("pdm_closed", 0.91), ("ego_mlp <v2>", 0.7)):
        add_evaluation(db, write_evaluation(tmp_path, name.split()[0], agent=name, epdms=epdms,
                                            checkpoint_sha256="ab" * 32 if "mlp" in name else None))
    return ranking(db)


def test_exports(tmp_path: Path, db: Path):
    table = _three(tmp_path, db)
    out = tmp_path / "out"
    write_csv(table, out / "lb.csv")
    write_markdown(table, out / "lb.md")
    write_html(table, out / "lb.html")

    back = pd.read_csv(out / "lb.csv")
    assert list(back.columns) == list(table.columns)
    assert back["agent"].tolist() == ["pdm_closed", "ego_mlp <v2>", "constant_velocity"]
    for column in ("epdms", *SUB_METRICS, *(f"stage_two_{m}" for m in METRICS)):
        np.testing.assert_array_equal(back[column].to_numpy(), table[column].to_numpy())   # exact round trip
    with open(out / "lb.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 3

    md = (out / "lb.md").read_text()
    for agent in table["agent"]:
        assert f"| {agent} |" in md
    assert "scorer scorer-1 · split navhard_two_stage · traffic log_replay" in md
    assert "| 1 | pdm_closed | - | 0123456789 | 0.9100 |" in md
    assert "## Stages" in md and "stage two" in md
    assert "| ego_mlp <v2>.pt (abababab) |" in md     # checkpoint file name and short hash

    page = (out / "lb.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "http" not in page and "<script" not in page            # self-contained
    assert "ego_mlp &lt;v2&gt;" in page and "<v2>" not in page     # escaped
    for agent in ("pdm_closed", "constant_velocity"):
        assert f"<td>{agent}</td>" in page
    assert not list(out.glob(".*.tmp"))                            # atomic writes left no temporaries


def test_markdown_escapes_pipes_and_handles_empty(tmp_path: Path, db: Path):
    add_evaluation(db, write_evaluation(tmp_path, "piped", agent="a|b"))
    md = to_markdown(ranking(db))
    assert "| a\\|b |" in md and "|---:|---|---|---|---:|" in md   # escaped pipe; text columns left-aligned
    empty = pd.DataFrame(columns=list(store.RANKING_COLUMNS))
    assert "no evaluations match" in to_markdown(empty) and "no evaluations match" in to_html(empty)


# ---------------------------------------------------------------------------------------------------------------
# CLI (the sub-app on its own; irlvla_bench/cli.py mounts it as `leaderboard`)


def test_cli_add_show_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runner = CliRunner()
    folders = [write_evaluation(tmp_path, n, epdms=e) for n, e in (("cv", 0.55), ("pdm", 0.91))]
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["add", *map(str, folders)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "leaderboard.sqlite").is_file()               # the default database
    assert result.output.count("added") == 2
    result = runner.invoke(app, ["add", str(folders[0])])
    assert result.exit_code == 0 and "already there" in result.output

    result = runner.invoke(app, ["show", "--stages"])
    assert result.exit_code == 0, result.output
    assert result.output.index("pdm") < result.output.index("cv")
    assert "0.9100" in result.output and "stage one" in result.output

    result = runner.invoke(app, ["export", "--md", "o/lb.md", "--html", "o/lb.html", "--csv", "o/lb.csv"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(tmp_path / "o" / "lb.csv")["agent"].tolist() == ["pdm", "cv"]
    assert runner.invoke(app, ["export"]).exit_code == 2


def test_cli_errors(tmp_path: Path):
    runner = CliRunner()
    db = tmp_path / "lb.sqlite"
    good = write_evaluation(tmp_path, "good")
    bad = write_evaluation(tmp_path, "bad", summary_edit=_drop("traffic"))
    result = runner.invoke(app, ["add", str(good), str(bad), "--db", str(db)])
    assert result.exit_code == 2
    assert "summary.json: traffic: missing" in result.output and "nothing added" in result.output
    assert not db.exists()                                          # validated first: nothing written

    result = runner.invoke(app, ["show", "--db", str(db)])
    assert result.exit_code == 2 and "no leaderboard database" in result.output

    other = write_evaluation(tmp_path, "other", traffic="idm")
    assert runner.invoke(app, ["add", str(good), str(other), "--db", str(db)]).exit_code == 0
    result = runner.invoke(app, ["show", "--db", str(db)])
    assert result.exit_code == 2 and "--traffic idm" in result.output and "--traffic log_replay" in result.output
    result = runner.invoke(app, ["show", "--db", str(db), "--traffic", "idm"])
    assert result.exit_code == 0 and "other" in result.output and "good" not in result.output

    flaky = write_evaluation(tmp_path, "flaky", num_failed=1)
    assert runner.invoke(app, ["add", str(flaky), "--db", str(db)]).exit_code == 2
    assert runner.invoke(app, ["add", str(flaky), "--db", str(db), "--allow-failed"]).exit_code == 0
    assert not math.isnan(ranking(db, traffic="log_replay")["epdms"].iloc[0])
