"""The two-stage EPDMS interval over mappings of the regression comparison.

Two halves: a tiny generated world evaluated for real (the summaries' ``mapping_scores`` and the recomputation
from rows must both be ``aggregate_agent``'s numbers), and constructed evaluations whose per-mapping deltas are
known in closed form (a hand-written split YAML supplies the mappings).
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluators.epdms import score_groups
from irlvla_bench.errors import InputError
from irlvla_bench.types import Proposals
from reports.compare import (
    METRICS,
    compare_evaluations,
    load_evaluation,
    mapping_scores_from_rows,
    split_mappings,
)
from reports.compare_report import mapping_headline, write_comparison_report

TWO = "navhard_two_stage"


# ----------------------------------------------------------------------------------------------------------------
# A real evaluation of a tiny world


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(data root, metric cache, {agent: evaluation folder}) of a 2-log tiny world evaluated by two baselines."""
    from irlvla_bench.caching import cache_split
    from irlvla_bench.evaluation import evaluate_agent
    from irlvla_bench.world import generate_world

    base = tmp_path_factory.mktemp("mapping_world")
    root, cache = base / "data", base / "metric_cache" / TWO
    generate_world(root, 2, 0, "tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cache_split(root, TWO, cache)
    runs = {}
    for agent in ("constant_velocity", "human"):
        evaluate_agent(agent, root, TWO, out_dir=base / "runs" / agent, cache_dir=cache)
        runs[agent] = base / "runs" / agent
    return root, cache, runs


def _groups_with_agent_poses(cache: Path, order: list[str], rows: pd.DataFrame):
    from irlvla_bench.caching import load_cached_groups

    poses = {r.token: np.asarray(json.loads(r.poses)) for r in rows.itertuples() if r.status == "ok"}
    groups = {g.mappings[0].now: g for g in load_cached_groups(cache)}
    out = []
    for now in order:
        g = groups[now]
        frames = {t: c.with_proposals(Proposals(("agent",), poses[t][None])) for t, c in g.frames.items()}
        out.append(replace(g, frames=frames))
    return out


def _without_mapping_scores(src: Path, dst: Path) -> Path:
    """A copy of an evaluation folder whose summary predates ``mapping_scores``."""
    shutil.copytree(src, dst)
    summary = json.loads((dst / "summary.json").read_text())
    del summary["mapping_scores"]
    (dst / "summary.json").write_text(json.dumps(summary))
    return dst


def test_summary_mapping_scores_are_aggregate_agents(world):
    root, cache, runs = world
    ev = load_evaluation(runs["constant_velocity"])
    summary = ev.summary
    mappings = split_mappings(summary)
    assert len(mappings) == summary["num_mappings"] == 2
    # The aggregation recomputed independently through score_groups (aggregate_agent on the cached groups).
    agent = score_groups(_groups_with_agent_poses(cache, [m.now for m in mappings], ev.rows)).agents[0]
    expected = [{"now": m.now, "prev": m.prev, "score": m.columns["score"],
                 "stage_one_score": m.stage_one["score"], "stage_two_score": m.stage_two["score"]}
                for m in agent.mappings]
    assert summary["mapping_scores"] == expected
    assert np.mean([m["score"] for m in summary["mapping_scores"]]) == pytest.approx(summary["epdms"], abs=1e-15)
    # The scores differ between mappings, so a mix-up of mappings would show.
    assert len({m["score"] for m in summary["mapping_scores"]}) == 2


def test_recompute_from_rows_reproduces_aggregate_agent(world):
    _, _, runs = world
    for folder in runs.values():
        ev = load_evaluation(folder)
        recomputed = mapping_scores_from_rows(ev.rows, split_mappings(ev.summary))
        # Bit-identical: the same operations on the same float64 numbers.
        assert recomputed.to_dict(orient="records") == ev.summary["mapping_scores"]
        assert recomputed["score"].mean() == pytest.approx(ev.summary["epdms"], abs=1e-15)
    # The CSV table gives the same numbers (weight and aggregated are read back from text).
    csv_only = runs["constant_velocity"].parent / "cv_csv"
    shutil.copytree(runs["constant_velocity"], csv_only)
    (csv_only / "rows.parquet").unlink()
    ev = load_evaluation(csv_only)
    assert mapping_scores_from_rows(ev.rows, split_mappings(ev.summary)).to_dict(orient="records") == \
        ev.summary["mapping_scores"]


def test_recompute_leaves_out_mappings_with_an_unaggregated_token(world):
    _, _, runs = world
    ev = load_evaluation(runs["constant_velocity"])
    mappings = split_mappings(ev.summary)
    rows = ev.rows.copy()
    rows.loc[rows["token"] == mappings[1].second_stage[0][1], "aggregated"] = False
    recomputed = mapping_scores_from_rows(rows, mappings)
    assert list(recomputed["now"]) == [mappings[0].now]
    with pytest.raises(ValueError, match="weight"):
        mapping_scores_from_rows(rows.drop(columns=["weight"]), mappings)


def test_real_comparison_same_from_summaries_and_from_rows(world, tmp_path):
    _, _, runs = world
    a, b = runs["constant_velocity"], runs["human"]
    from_summaries = compare_evaluations(a, b, n_boot=500, seed=3)
    old_a = _without_mapping_scores(a, tmp_path / "old_a")
    old_b = _without_mapping_scores(b, tmp_path / "old_b")
    from_rows = compare_evaluations(old_a, old_b, n_boot=500, seed=3)
    ms, mr = from_summaries.mapping_stats, from_rows.mapping_stats
    assert ms is not None and mr is not None
    assert "mapping_scores" in ms["source_a"] and "recomputed from" in mr["source_a"]
    keys = ("n", "mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value", "wins", "ties", "losses")
    assert {k: ms[k] for k in keys} == {k: mr[k] for k in keys}
    assert ms["n"] == 2
    assert ms["mean_a"] == pytest.approx(from_summaries.epdms_a, abs=1e-12)
    assert ms["delta"] == pytest.approx(from_summaries.epdms_delta, abs=1e-12)
    # One side with the field, the other without: each side uses what it has.
    mixed = compare_evaluations(a, old_b, n_boot=500, seed=3).mapping_stats
    assert "mapping_scores" in mixed["source_a"] and "recomputed from" in mixed["source_b"]
    assert mixed["delta"] == ms["delta"]


# ----------------------------------------------------------------------------------------------------------------
# Constructed evaluations with known per-mapping deltas

M = 12  # mappings; each has two second-stage pairs


def _mapping_tokens(i: int) -> tuple[str, str, list[list[str]]]:
    return f"now{i:02d}", f"prev{i:02d}", [[f"s{i:02d}a_now", f"s{i:02d}a_prev"], [f"s{i:02d}b_now", f"s{i:02d}b_prev"]]


def _write_split(data_root: Path) -> None:
    """A minimal NAVSIM split YAML with M mappings (what ``load_split`` reads)."""
    split_dir = data_root / "navsim_config" / "train_test_split"
    (split_dir / "scene_filter").mkdir(parents=True)
    (split_dir / "scene_filter" / "constructed.yaml").write_text("num_history_frames: 4\nnum_future_frames: 10\n")
    lines = ["defaults:", "  - scene_filter: constructed", "data_split: test", "reactive_all_mapping:"]
    for i in range(M):
        now, prev, pairs = _mapping_tokens(i)
        pair_text = ", ".join(f"['{p[0]}', '{p[1]}']" for p in pairs)
        lines.append(f"  - ['{now}', '{prev}', [{pair_text}]]")
    (split_dir / f"{TWO}.yaml").write_text("\n".join(lines) + "\n")


def _rows(first_scores: np.ndarray, second_scores: np.ndarray) -> pd.DataFrame:
    """Row table: first_scores (M, 2) for (now, prev), second_scores (M, 2, 2) for [pair][now/prev]."""
    records = []

    def row(token: str, stage: str, score: float, weight: float) -> dict:
        r = {"token": token, "log_name": "log", "frame_type": "original" if stage == "first" else "synthetic",
             "stage": stage, "status": "ok", "error": "", "poses": "[]", "weight": weight, "aggregated": True,
             "multiplicative_metrics_prod": 1.0, "seconds_agent": 0.0}
        r.update({m: 1.0 for m in METRICS})
        r["score"] = score
        return r

    for i in range(M):
        now, prev, pairs = _mapping_tokens(i)
        records += [row(now, "first", first_scores[i, 0], 1.0), row(prev, "first", first_scores[i, 1], 1.0)]
    for i in range(M):
        _, _, pairs = _mapping_tokens(i)
        # Uneven pseudo-closed-loop weights (normalised per side), so a plain mean would give other numbers.
        for side in (0, 1):
            for k, weight in ((0, 0.3), (1, 0.7)):
                records.append(row(pairs[k][side], "second", second_scores[i, k, side], weight))
    return pd.DataFrame.from_records(records)


def _expected_mapping_scores(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """NAVSIM's per-mapping score written out by hand: (s1_now * s2_now + s1_prev * s2_prev) / 2."""
    s2_now = 0.3 * second[:, 0, 0] + 0.7 * second[:, 1, 0]
    s2_prev = 0.3 * second[:, 0, 1] + 0.7 * second[:, 1, 1]
    return (first[:, 0] * s2_now + first[:, 1] * s2_prev) / 2


def _write(folder: Path, rows: pd.DataFrame, split_root: Path, epdms: float, **overrides) -> Path:
    metrics = {m: 1.0 for m in METRICS}
    metrics["score"] = epdms
    summary = {
        "schema": "irlvla-evaluation/v1", "scorer_version": "epdms-test", "split": TWO, "aggregation": "two_stage",
        "traffic": "log_replay", "agent": {"name": folder.name}, "seed": 0, "data_root": str(split_root),
        "cache_dir": str(split_root / "no_cache"), "num_tokens": len(rows), "num_failed": 0, "failed": [],
        "num_mappings": M, "dropped_mappings": [], "metrics": metrics, "stage_one": None, "stage_two": None,
        "epdms": epdms,
    }
    summary.update(overrides)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    rows.to_parquet(folder / "rows.parquet", index=False)
    return folder


@pytest.fixture()
def constructed(tmp_path):
    """(data root, A's first-stage scores, A's second-stage scores, writer of an evaluation folder)."""
    rng = np.random.default_rng(11)
    data_root = tmp_path / "data"
    _write_split(data_root)
    first, second = rng.uniform(0.3, 0.8, (M, 2)), rng.uniform(0.2, 0.8, (M, 2, 2))

    def write(name: str, first_scores, second_scores, **overrides) -> Path:
        epdms = overrides.pop("epdms", float(_expected_mapping_scores(first_scores, second_scores).mean()))
        return _write(tmp_path / name, _rows(first_scores, second_scores), data_root, epdms, **overrides)

    return data_root, first, second, write


def test_recompute_matches_the_hand_formula(constructed):
    data_root, first, second, write = constructed
    ev = load_evaluation(write("a", first, second))
    scores = mapping_scores_from_rows(ev.rows, split_mappings(ev.summary))
    np.testing.assert_allclose(scores["score"], _expected_mapping_scores(first, second), rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores["stage_one_score"], first.mean(axis=1), rtol=0, atol=1e-15)


def test_constant_mapping_shift_gives_a_known_interval(constructed):
    """Perfect first stage, B = A + 0.1 on every second-stage token: every mapping gains exactly 0.1."""
    _, _, second, write = constructed
    ones = np.ones((M, 2))
    a, b = write("a", ones, second), write("b", ones, second + 0.1)
    result = compare_evaluations(a, b, n_boot=1000, seed=0)
    m = result.mapping_stats
    assert m["n"] == M and (m["wins"], m["ties"], m["losses"]) == (M, 0, 0)
    assert m["delta"] == pytest.approx(0.1, abs=1e-12)
    assert m["ci_low"] == pytest.approx(0.1, abs=1e-12) and m["ci_high"] == pytest.approx(0.1, abs=1e-12)
    assert m["p_value"] == pytest.approx(2 / 2**M)  # exact two-sided signed-rank p, all M deltas positive
    assert [r["score_delta"] for r in m["mappings"]] == pytest.approx([0.1] * M, abs=1e-12)
    assert m["delta"] == pytest.approx(result.epdms_delta, abs=1e-12)


def test_shift_on_every_token(constructed):
    """B = A + 0.1 on every token: per mapping delta = 0.1 (s1_now + s2_now + s1_prev + s2_prev) / 2 + 0.01."""
    _, first, second, write = constructed
    a, b = write("a", first, second), write("b", first + 0.1, second + 0.1)
    m = compare_evaluations(a, b, n_boot=2000, seed=0).mapping_stats
    s2_now = 0.3 * second[:, 0, 0] + 0.7 * second[:, 1, 0]
    s2_prev = 0.3 * second[:, 0, 1] + 0.7 * second[:, 1, 1]
    deltas = 0.1 * (first[:, 0] + s2_now + first[:, 1] + s2_prev) / 2 + 0.01
    assert [r["score_delta"] for r in m["mappings"]] == pytest.approx(list(deltas), abs=1e-12)
    assert m["delta"] == pytest.approx(deltas.mean(), abs=1e-12)
    assert deltas.min() - 1e-12 <= m["ci_low"] < m["delta"] < m["ci_high"] <= deltas.max() + 1e-12
    assert m["wins"] == M and m["p_value"] < 0.001
    again = compare_evaluations(a, b, n_boot=2000, seed=0).mapping_stats
    other_seed = compare_evaluations(a, b, n_boot=2000, seed=1).mapping_stats
    assert (again["ci_low"], again["ci_high"]) == (m["ci_low"], m["ci_high"])  # seeded
    assert (other_seed["ci_low"], other_seed["ci_high"]) != (m["ci_low"], m["ci_high"])


def test_identical_evaluations(constructed):
    _, first, second, write = constructed
    m = compare_evaluations(write("a", first, second), write("b", first, second), n_boot=200).mapping_stats
    assert m["delta"] == 0.0 and (m["ci_low"], m["ci_high"]) == (0.0, 0.0)
    assert m["p_value"] == 1.0 and (m["wins"], m["ties"], m["losses"]) == (0, M, 0)


def test_one_regressing_mapping_is_a_loss(constructed):
    _, first, second, write = constructed
    worse = second.copy()
    worse[4] = 0.0  # mapping 4: every second-stage token fails in B
    m = compare_evaluations(write("a", first, second), write("b", first, worse), n_boot=200).mapping_stats
    assert (m["wins"], m["ties"], m["losses"]) == (0, M - 1, 1)
    lost = _expected_mapping_scores(first, second)[4]
    assert m["delta"] == pytest.approx(-lost / M, abs=1e-12)
    assert m["mappings"][4]["now"] == "now04" and m["mappings"][4]["score_b"] == 0.0


def test_a_dropped_mapping_is_left_out_with_a_note(constructed, tmp_path):
    data_root, first, second, write = constructed
    a = write("a", first, second)
    rows = _rows(first, second)
    rows.loc[rows["token"] == "s03a_prev", ["status", "aggregated", "score", "weight"]] = ["failed", False, np.nan,
                                                                                           np.nan]
    keep = np.arange(M) != 3
    epdms = float(_expected_mapping_scores(first, second)[keep].mean())
    b = _write(tmp_path / "b", rows, data_root, epdms, num_mappings=M - 1, num_failed=1)
    result = compare_evaluations(a, b, n_boot=200)
    m = result.mapping_stats
    assert m["n"] == M - 1 and (m["num_mappings_a"], m["num_mappings_b"]) == (M, M - 1)
    assert "now03" not in [r["now"] for r in m["mappings"]]
    assert m["delta"] == pytest.approx(0.0, abs=1e-12)
    assert any("1 mapping(s) of A and 0 of B are not scored in both" in n for n in result.notes)


def test_summary_mapping_scores_are_used_when_present(constructed):
    """With ``mapping_scores`` in both summaries the split is not needed (its data may be gone)."""
    data_root, first, second, write = constructed
    scores = _expected_mapping_scores(first, second)

    def field(values):
        return [{"now": f"now{i:02d}", "prev": f"prev{i:02d}", "score": float(v), "stage_one_score": None,
                 "stage_two_score": None} for i, v in enumerate(values)]

    shifted = scores + np.linspace(-0.05, 0.15, M)
    a = write("a", first, second, mapping_scores=field(scores), data_root="/gone")
    b = write("b", first, second, mapping_scores=field(shifted), data_root="/gone",
              epdms=float(shifted.mean()))
    m = compare_evaluations(a, b, n_boot=200).mapping_stats
    assert m is not None and m["delta"] == pytest.approx(0.05, abs=1e-12)
    assert m["source_b"].endswith("summary.json mapping_scores")


def test_no_interval_when_the_mappings_cannot_be_found(constructed):
    _, first, second, write = constructed
    a = write("a", first, second, data_root="/definitely/not/here")
    b = write("b", first, second + 0.1)
    result = compare_evaluations(a, b, n_boot=100)
    assert result.mapping_stats is None
    note = next(n for n in result.notes if n.startswith("No interval for the two-stage EPDMS"))
    assert str(a / "summary.json") in note and "could not be read" in note and "unknown split" in note
    assert mapping_headline(result) is None
    # The token-level comparison is still there.
    assert result.stat("score")["n"] == len(result.pairs) > 0


def test_no_interval_when_the_split_is_not_the_evaluated_one(constructed):
    """A summary EPDMS the split's mappings do not reproduce (e.g. the split file changed) is not trusted."""
    _, first, second, write = constructed
    a = write("a", first, second, epdms=0.123)
    result = compare_evaluations(a, write("b", first, second), n_boot=100)
    assert result.mapping_stats is None
    assert any("do not reproduce the evaluation's EPDMS" in n and "0.123" in n for n in result.notes)


def test_malformed_mapping_scores_name_the_field(constructed):
    _, first, second, write = constructed
    a = write("a", first, second, mapping_scores=[{"now": "now00", "prev": "prev00", "score": "high"}])
    with pytest.raises(InputError) as info:
        compare_evaluations(a, write("b", first, second), n_boot=10)
    assert info.value.field == "mapping_scores[0].score" and str(a / "summary.json") in info.value.source


def test_one_stage_has_no_mapping_interval(constructed):
    _, first, second, write = constructed
    overrides = dict(split="navtest", aggregation="one_stage", num_mappings=None)
    result = compare_evaluations(write("a", first, second, **overrides), write("b", first, second + 0.1, **overrides),
                                 n_boot=100)
    assert result.mapping_stats is None
    assert any(n.startswith("One-stage split") and "already are the paired bootstrap" in n for n in result.notes)


def test_report_outputs_carry_the_headline(constructed, tmp_path):
    _, _, second, write = constructed
    ones = np.ones((M, 2))
    result = compare_evaluations(write("a", ones, second), write("b", ones, second + 0.1), n_boot=200)
    line = mapping_headline(result)
    assert line == (f"Two-stage EPDMS delta +0.1000, 95% CI over {M} mappings [+0.1000, +0.1000], "
                    "Wilcoxon p 4.88e-04, wins/ties/losses 12/0/0")
    files = write_comparison_report(result, tmp_path / "report", gallery_k=0)
    data = json.loads(files.json.read_text())
    assert data["mapping_headline"] == line
    assert data["mapping_stats"]["n"] == M and len(data["mapping_stats"]["mappings"]) == M
    assert math.isclose(data["mapping_stats"]["delta"], 0.1, abs_tol=1e-12)
    markdown, page = files.markdown.read_text(), files.html.read_text()
    assert "Two-stage EPDMS delta +0.1000, 95% CI over 12 mappings [+0.1000, +0.1000]" in markdown
    assert "## Two-stage EPDMS over mappings" in markdown
    assert "Two-stage EPDMS delta +0.1000, 95% CI over 12 mappings [+0.1000, +0.1000]" in page
    assert "<h2>Two-stage EPDMS over mappings</h2>" in page


def test_cli_prints_the_mapping_interval(constructed, tmp_path):
    from typer.testing import CliRunner

    from reports.cli import app

    _, _, second, write = constructed
    ones = np.ones((M, 2))
    a, b = write("a", ones, second), write("b", ones, second + 0.1)
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--out", str(tmp_path / "report"), "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert f"Two-stage EPDMS delta +0.1000, 95% CI over {M} mappings [+0.1000, +0.1000]" in result.output
