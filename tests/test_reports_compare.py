"""The regression comparison report on constructed evaluations with known deltas, and the reward-hacking table."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.errors import InputError
from irlvla_bench.examples import make_case
from reports.bev import case_path, ego_to_global, find_scene, parse_poses, render_bev
from reports.cli import app
from reports.compare import METRICS, bootstrap_mean_ci, compare_evaluations, wilcoxon_p, win_tie_loss
from reports.compare_report import write_comparison_report
from reports.hacking import reward_hacking_table

N = 120  # paired tokens; the first half is stage one, the second half stage two
SHIFT = 0.05  # true (and exact sample) mean score delta
REGRESSION_TOKEN, GAIN_TOKEN = "tok000", "tok001"  # the biggest changes; both have a cached scene
CASED = {REGRESSION_TOKEN: ("lead", 3), GAIN_TOKEN: ("pedestrian", 4)}
LOG = "log_x"


def _tokens() -> list[str]:
    return [f"tok{i:03d}" for i in range(N)]


def _symmetric(rng: np.random.Generator, scale: float) -> np.ndarray:
    """Noise whose mean is exactly zero: (e, -e) pairs in shuffled order."""
    half = rng.normal(0.0, scale, N // 2)
    noise = np.concatenate([half, -half])
    return noise[rng.permutation(N)]


def _straight(speed: float) -> str:
    t = np.arange(1, 9) * 0.5
    return json.dumps(np.column_stack([speed * t, np.zeros(8), np.zeros(8)]).tolist())


def _constructed() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of A and B with known deltas per metric (see the tests for the expected numbers)."""
    rng = np.random.default_rng(7)
    tokens = _tokens()
    stage = np.where(np.arange(N) < N // 2, "first", "second")
    base = rng.uniform(0.3, 0.7, N)
    score_noise = _symmetric(rng, 0.02)
    # Swap the noise of tokens 0 and 1 for a large opposite pair: the mean stays exactly SHIFT, and these two
    # become the biggest regression and gain.
    pair = score_noise[:2].sum()
    score_noise[0], score_noise[1] = -0.4, 0.4 + pair
    base[0], base[1] = 0.8, 0.3
    a = {m: np.ones(N) for m in METRICS}
    b = {m: np.ones(N) for m in METRICS}
    a["score"], b["score"] = base, base + SHIFT + score_noise
    ep = rng.uniform(0.4, 0.9, N)
    a["ego_progress"], b["ego_progress"] = ep, ep + _symmetric(rng, 0.05)  # pure noise, mean delta exactly 0
    a["no_at_fault_collisions"][10:20] = 0.0  # A collides on 10..19
    b["no_at_fault_collisions"][15:19] = 0.0  # B on 15..18 and 90: wins 10..14, 19; loss 90 (stage two)
    b["no_at_fault_collisions"][90] = 0.0
    b["two_frame_extended_comfort"][[70, 80]] = 0.0
    # traffic_light_compliance stays identical: every difference is zero

    def frame(values: dict, poses: list[str]) -> pd.DataFrame:
        df = pd.DataFrame({"token": tokens, "log_name": LOG, "frame_type": "original", "stage": stage,
                           "status": "ok", "error": ""})
        for m in METRICS:
            df[m] = values[m]
        df["multiplicative_metrics_prod"] = 1.0
        df["weight"] = 1.0
        df["poses"] = poses
        df["seconds_agent"] = 0.01
        return df

    poses_a = [_straight(8.0)] * N
    poses_b = [_straight(9.0)] * N
    for token, (scenario, seed) in CASED.items():
        case = make_case(scenario, seed)
        props = {p["id"]: json.dumps(p["poses"]) for p in case["proposals"]}
        i = tokens.index(token)
        poses_a[i], poses_b[i] = props["keep"], props["off_road_right"]
    rows_a, rows_b = frame(a, poses_a), frame(b, poses_b)

    # Outside the pairing: one token only in A, one only in B, one failed in B.
    extra = rows_a.iloc[[2]].copy()
    only_a = extra.assign(token="only_a")
    only_b = extra.assign(token="only_b")
    failed = extra.assign(token="failed_b")
    failed_b = failed.copy()
    failed_b[list(METRICS)] = np.nan
    failed_b["status"], failed_b["error"] = "failed", "RuntimeError: boom"
    rows_a = pd.concat([rows_a, only_a, failed], ignore_index=True)
    rows_b = pd.concat([rows_b, only_b, failed_b], ignore_index=True)
    return rows_a, rows_b


def _summary(rows: pd.DataFrame, epdms: float, cache_dir: Path, **overrides) -> dict:
    metrics = {m: 1.0 for m in METRICS}
    metrics["score"] = epdms
    summary = {
        "schema": "irlvla-evaluation/v1", "scorer_version": "epdms-test", "split": "navhard_two_stage",
        "aggregation": "two_stage", "traffic": "log_replay",
        "agent": {"name": "constant_velocity", "checkpoint": None, "checkpoint_sha256": None}, "seed": 0,
        "config_hash": "x", "git_commit": None, "git_dirty": False, "versions": {},
        "data_root": "/nowhere", "cache_dir": str(cache_dir), "created_utc": "2025-01-01T00:00:00Z",
        "num_tokens": int((rows["status"] == "ok").sum()), "num_failed": int((rows["status"] != "ok").sum()),
        "failed": [], "metrics": metrics, "stage_one": dict(metrics, score=epdms + 0.01),
        "stage_two": dict(metrics, score=epdms - 0.01), "epdms": epdms,
    }
    summary.update(overrides)
    return summary


def _write_eval(folder: Path, rows: pd.DataFrame, summary: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(summary))
    rows.to_parquet(folder / "rows.parquet", index=False)
    rows.to_csv(folder / "rows.csv", index=False)
    return folder


def _write_cache(cache_dir: Path) -> None:
    for token, (scenario, seed) in CASED.items():
        case = make_case(scenario, seed)
        case["token"], case["log_name"] = token, LOG
        path = case_path(cache_dir, LOG, token)
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            json.dump(case, handle)


@pytest.fixture(scope="module")
def evals(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("evals")
    cache = root / "cache"
    _write_cache(cache)
    rows_a, rows_b = _constructed()
    a = _write_eval(root / "il", rows_a, _summary(rows_a, 0.80, cache))
    b = _write_eval(root / "rl", rows_b, _summary(rows_b, 0.85, cache, agent={"name": "diffusion_rl"}))
    return a, b


@pytest.fixture(scope="module")
def comparison(evals):
    return compare_evaluations(*evals, n_boot=2000, seed=0)


# ----------------------------------------------------------------------------------------------------------------
# Numbers


def test_metric_list_matches_the_scorer():
    assert METRICS[:8] == SUB_METRICS


def test_pairing_reports_unpaired_and_failed_tokens(comparison):
    assert comparison.num_paired == N
    assert comparison.only_in_a == ("only_a",)
    assert comparison.only_in_b == ("only_b",)
    assert comparison.failed_in_b == ("failed_b",) and comparison.failed_in_a == ()
    assert any("only in A" in note for note in comparison.notes)
    assert any("row `score`" in note and "summary.json" in note for note in comparison.notes)


def test_exact_means_and_clear_shift(comparison):
    rows_a, rows_b = _constructed()
    score = comparison.stat("score")
    assert score["n"] == N
    assert score["mean_a"] == pytest.approx(rows_a["score"][:N].mean(), abs=1e-12)
    assert score["mean_b"] == pytest.approx(rows_b["score"][:N].mean(), abs=1e-12)
    assert score["delta"] == pytest.approx(SHIFT, abs=1e-12)
    assert score["ci_low"] < SHIFT < score["ci_high"]
    assert score["ci_low"] > 0.0
    assert score["p_value"] < 1e-6


def test_pure_noise_is_not_significant(comparison):
    ep = comparison.stat("ego_progress")
    assert ep["delta"] == pytest.approx(0.0, abs=1e-12)
    assert ep["ci_low"] < 0.0 < ep["ci_high"]
    assert ep["p_value"] > 0.5


def test_win_tie_loss_per_stage(comparison):
    def counts(metric, stage):
        row = comparison.stat(metric, stage)
        return int(row["wins"]), int(row["ties"]), int(row["losses"])

    assert counts("no_at_fault_collisions", "all") == (6, N - 7, 1)
    assert counts("no_at_fault_collisions", "first") == (6, N // 2 - 6, 0)
    assert counts("no_at_fault_collisions", "second") == (0, N // 2 - 1, 1)
    assert counts("two_frame_extended_comfort", "second") == (0, N // 2 - 2, 2)
    assert comparison.stat("no_at_fault_collisions")["delta"] == pytest.approx(5 / N)


def test_all_zero_differences_give_p_one(comparison):
    tlc = comparison.stat("traffic_light_compliance")
    assert tlc["p_value"] == 1.0
    assert (tlc["ci_low"], tlc["ci_high"]) == (0.0, 0.0)
    assert (int(tlc["wins"]), int(tlc["ties"]), int(tlc["losses"])) == (0, N, 0)
    assert wilcoxon_p(np.full(5, 1e-12)) == 1.0  # floating noise is a tie, not a difference
    assert win_tie_loss(np.array([1e-10, -1e-10, 0.5, -0.5, 0.0])) == (1, 3, 1)


def test_headline_comes_from_the_summaries(comparison):
    assert comparison.epdms_a == 0.80 and comparison.epdms_b == 0.85
    assert comparison.epdms_delta == pytest.approx(0.05)
    head = comparison.headline.set_index(["section", "metric"])
    assert head.loc[("stage_one", "score"), "delta"] == pytest.approx(0.05)


def test_top_changes(comparison):
    assert comparison.top_regressions["token"].iloc[0] == REGRESSION_TOKEN
    assert comparison.top_gains["token"].iloc[0] == GAIN_TOKEN
    assert (comparison.top_regressions["score_delta"] < 0).all()
    assert (comparison.top_gains["score_delta"] > 0).all()
    assert comparison.top_gains["score_delta"].is_monotonic_decreasing


def test_bootstrap_is_seeded_and_vectorised():
    deltas = np.random.default_rng(0).normal(0.1, 1.0, 500)
    first = bootstrap_mean_ci(deltas, n_boot=3000, rng=np.random.default_rng(5))
    again = bootstrap_mean_ci(deltas, n_boot=3000, rng=np.random.default_rng(5))
    assert first == again
    assert bootstrap_mean_ci(np.array([0.3]), n_boot=10, rng=np.random.default_rng(0)) == (0.3, 0.3)


def test_comparison_is_reproducible(evals, comparison):
    again = compare_evaluations(*evals, n_boot=2000, seed=0)
    pd.testing.assert_frame_equal(again.stats, comparison.stats)


@pytest.mark.parametrize("field, value", [("split", "navtest"), ("scorer_version", "epdms-other"),
                                          ("traffic", "idm")])
def test_refuses_incomparable_evaluations(tmp_path, evals, field, value):
    summary = json.loads((evals[1] / "summary.json").read_text())
    summary[field] = value
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps(summary))
    (other / "rows.parquet").write_bytes((evals[1] / "rows.parquet").read_bytes())
    with pytest.raises(InputError) as info:
        compare_evaluations(evals[0], other, n_boot=10)
    assert info.value.field == field
    assert str(evals[0] / "summary.json") in str(info.value) and str(other / "summary.json") in str(info.value)


def test_missing_rows_is_a_clear_error(tmp_path, evals):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "summary.json").write_text((evals[1] / "summary.json").read_text())
    with pytest.raises(InputError, match="rows.parquet"):
        compare_evaluations(evals[0], folder, n_boot=10)


def test_one_stage_evaluation_from_csv(tmp_path):
    """One-stage runs: EC is NaN (left out), only stage 'first'; rows.csv is read when the parquet is absent."""
    rows_a, rows_b = _constructed()
    for rows in (rows_a, rows_b):
        rows["stage"] = "first"
        rows["two_frame_extended_comfort"] = np.nan
    folders = []
    for name, rows, epdms in (("a", rows_a, 0.7), ("b", rows_b, 0.75)):
        summary = _summary(rows, epdms, tmp_path / "no_cache", split="navtest", aggregation="one_stage",
                           stage_one=None, stage_two=None)
        folder = _write_eval(tmp_path / name, rows, summary)
        (folder / "rows.parquet").unlink()
        folders.append(folder)
    result = compare_evaluations(*folders, n_boot=200)
    assert set(result.stats["stage"]) == {"all", "first"}
    assert "two_frame_extended_comfort" not in set(result.stats["metric"])
    assert result.stat("score")["delta"] == pytest.approx(SHIFT, abs=1e-12)
    assert set(result.headline["section"]) == {"metrics"}
    files = write_comparison_report(result, tmp_path / "report", gallery_k=2)
    assert set(re.findall(r'<img src="([^"]+)"', files.html.read_text())) == {
        p.relative_to(files.out_dir).as_posix() for p in files.out_dir.rglob("*.png")}


# ----------------------------------------------------------------------------------------------------------------
# Report and bird's-eye plots


def test_report_files_and_links(tmp_path, comparison):
    files = write_comparison_report(comparison, tmp_path / "report")
    out = files.out_dir
    for path in (files.json, files.markdown, files.html, out / "figures" / "forest.png",
                 out / "figures" / "score_delta_hist.png"):
        assert path.is_file() and path.stat().st_size > 0, path
    page = files.html.read_text()
    sources = set(re.findall(r'<img src="([^"]+)"', page))
    pngs = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert sources == pngs  # every image on the page exists and every PNG is on the page
    assert "http://" not in page and "https://" not in page  # self-contained

    data = json.loads(files.json.read_text())
    assert data["epdms"]["delta"] == pytest.approx(0.05)
    assert len(data["tokens"]) == N
    gallery = {(g["kind"], g["token"]): g for g in data["gallery"]}
    assert sum(g["kind"] == "gain" for g in data["gallery"]) == 6
    assert 1 <= sum(g["kind"] == "regression" for g in data["gallery"]) <= 6
    assert gallery[("regression", REGRESSION_TOKEN)]["note"] == ""  # the cached scene was found
    assert gallery[("gain", GAIN_TOKEN)]["note"] == ""
    assert any("scene not found" in g["note"] for g in data["gallery"])  # the others: trajectories only
    assert "row `score`" in files.markdown.read_text()

    # A second report into the same folder leaves no stale gallery images behind.
    files = write_comparison_report(comparison, out, gallery_k=1)
    assert len(list((out / "figures" / "bev").glob("*.png"))) == 2
    assert set(re.findall(r'<img src="([^"]+)"', files.html.read_text())) == {
        p.relative_to(out).as_posix() for p in out.rglob("*.png")}


def test_bev_without_scene_does_not_crash(tmp_path):
    scene = find_scene(tmp_path / "no_cache", "log", "missing")
    assert scene.case is None and "not found" in scene.note
    path = render_bev(tmp_path / "bev.png", scene=scene,
                      trajectories={"A": parse_poses(_straight(8.0)), "B": parse_poses("not json")})
    assert path.is_file() and path.stat().st_size > 0
    assert find_scene(None, "log", "x").case is None


def test_ego_to_global():
    out = ego_to_global(np.array([[1.0, 0.0, 0.1]]), np.array([10.0, 20.0, np.pi / 2]))
    np.testing.assert_allclose(out, [[10.0, 21.0, np.pi / 2 + 0.1]], atol=1e-12)


def test_cli_compare(tmp_path, evals):
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(evals[0]), str(evals[1]), "--out", str(tmp_path / "r"),
                                 "--n-boot", "200"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r" / "index.html").is_file()
    assert "EPDMS" in result.output

    summary = json.loads((evals[1] / "summary.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps(dict(summary, traffic="idm")))
    (other / "rows.parquet").write_bytes((evals[1] / "rows.parquet").read_bytes())
    result = runner.invoke(app, ["compare", str(evals[0]), str(other), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2
    assert "traffic" in result.stderr and not (tmp_path / "r2").exists()


# ----------------------------------------------------------------------------------------------------------------
# Reward hacking table


def test_reward_hacking_table_on_known_inputs():
    tokens = ["t0", "t1", "t2", "t3"]
    pred_a = pd.DataFrame({"ego_progress": [0.5, 0.5, 0.5, 0.5], "no_at_fault_collisions": [1.0, 1.0, 0.0, 1.0]},
                          index=tokens)
    pred_b = pd.DataFrame({"ego_progress": [0.8, 0.8, 0.8, 0.8], "no_at_fault_collisions": [1.0, 1.0, 0.0, 1.0]},
                          index=tokens)
    exact_a = pd.DataFrame({"ego_progress": [0.5, 0.5, 0.5, np.nan], "no_at_fault_collisions": [1.0, 0.0, 0.0, 1.0]},
                           index=tokens)
    # An extra token in one table is ignored; t3's NaN drops it from ego_progress only.
    exact_b = pd.DataFrame({"ego_progress": [0.55, 0.55, 0.55, 0.9, 0.0],
                            "no_at_fault_collisions": [1.0, 1.0, 0.0, 1.0, 0.0]}, index=tokens + ["extra"])
    table = reward_hacking_table(pred_a, pred_b, exact_a, exact_b, tolerance=0.01)
    assert list(table.index) == ["no_at_fault_collisions", "ego_progress"]  # scorer order
    ep, nc = table.loc["ego_progress"], table.loc["no_at_fault_collisions"]
    assert ep["n"] == 3 and nc["n"] == 4
    assert ep["predicted_gain"] == pytest.approx(0.3)
    assert ep["exact_gain"] == pytest.approx(0.05)
    assert ep["excess"] == pytest.approx(0.25)
    assert bool(ep["hacking"]) is True
    assert nc["predicted_gain"] == pytest.approx(0.0) and nc["exact_gain"] == pytest.approx(0.25)
    assert bool(nc["hacking"]) is False
    # A looser tolerance clears the flag.
    assert not reward_hacking_table(pred_a, pred_b, exact_a, exact_b, tolerance=0.3)["hacking"].any()


def test_reward_hacking_table_rejects_bad_inputs():
    frame = pd.DataFrame({"score": [1.0]}, index=["t0"])
    with pytest.raises(ValueError, match="no token"):
        reward_hacking_table(frame, frame, frame, pd.DataFrame({"score": [1.0]}, index=["t9"]))
    with pytest.raises(ValueError, match="missing metric"):
        reward_hacking_table(frame, frame, frame, frame, metrics=["ego_progress"])
    with pytest.raises(ValueError, match="unique"):
        reward_hacking_table(frame, frame, frame, pd.concat([frame, frame]))


def test_hacking_markdown_signs_gains_and_flags_rows():
    from reports.hacking import hacking_markdown

    table = pd.DataFrame({"n": [10, 10], "predicted_gain": [0.2, -0.01], "exact_gain": [0.05, -0.01],
                          "excess": [0.15, 0.0], "hacking": [True, False]},
                         index=pd.Index(["drivable_area_compliance", "lane_keeping"], name="metric"))
    text = hacking_markdown(table)
    assert "| drivable_area_compliance | 10 | +0.2000 | +0.0500 | +0.1500 | **yes** |" in text
    assert "| lane_keeping | 10 | -0.0100 | -0.0100 | +0.0000 | no |" in text
