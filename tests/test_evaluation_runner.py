"""The evaluation runner and NAVSIM submissions end to end on a tiny generated world, with small test agents.

One world and one metric cache per module; each test writes its runs under its own tmp_path.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.base import AGENTS, Agent, SensorConfig, Trajectory, register_agent
from evaluators.epdms import SCORER_VERSION, score_frame, score_groups
from evaluators.epdms.aggregate import SUMMARY_COLUMNS
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.evaluation import (
    SubmissionError,
    evaluate_agent,
    evaluate_submission,
    validate_submission,
    write_submission,
)
from irlvla_bench.evaluation.progress import ProgressMismatchError
from irlvla_bench.evaluation.submission import SUBMISSION_KEYS
from irlvla_bench.evaluation.summary import ROW_COLUMNS
from irlvla_bench.types import Proposals

TWO = "navhard_two_stage"
ONE = "navtest"


# ----------------------------------------------------------------------------------------------------------------
# Test agents (registered for this module only)


def straight_poses(agent_input) -> np.ndarray:
    speed = float(np.hypot(*agent_input.current.velocity))
    t = 0.5 * np.arange(1, 9)
    return np.column_stack([speed * t, 0.02 * speed * t**2, 0.01 * t])


class StraightAgent(Agent):
    """Constant-velocity-like; counts its calls per class."""

    name = "evaltest_straight"
    calls = 0

    def sensor_config(self) -> SensorConfig:
        return SensorConfig(history_frames=2, cameras=("CAM_F0",))

    def compute_trajectory(self, agent_input):
        type(self).calls += 1
        assert agent_input.privileged is None
        assert agent_input.cameras[-1]["CAM_F0"].image.ndim == 3  # the sensor it asked for, in both stages
        return Trajectory(straight_poses(agent_input))


class FailingAgent(StraightAgent):
    name = "evaltest_failing"
    fail_token = ""

    def compute_trajectory(self, agent_input):
        if agent_input.token == type(self).fail_token:
            raise ValueError("planted failure")
        return super().compute_trajectory(agent_input)


class InterruptingAgent(StraightAgent):
    name = "evaltest_interrupting"
    limit = 0

    def compute_trajectory(self, agent_input):
        if type(self).calls >= type(self).limit:
            raise KeyboardInterrupt
        return super().compute_trajectory(agent_input)


class PrivilegedAgent(Agent):
    """Replays the PDM-Closed reference of the case it is given."""

    name = "evaltest_privileged"
    requires_privileged = True

    def compute_trajectory(self, agent_input):
        case = agent_input.privileged
        assert case is not None and case.token == agent_input.token
        return Trajectory(case.proposals.poses[case.proposals.ids.index("pdm_closed")])


class CheckpointAgent(StraightAgent):
    """Scales its speed by the number stored in its checkpoint file."""

    name = "evaltest_checkpoint"

    def __init__(self, checkpoint: str | None = None):
        self.scale = float(Path(checkpoint).read_text()) if checkpoint else 1.0

    def compute_trajectory(self, agent_input):
        return Trajectory(self.scale * straight_poses(agent_input))


TEST_AGENTS = {cls.name: cls for cls in (StraightAgent, FailingAgent, InterruptingAgent, PrivilegedAgent,
                                         CheckpointAgent)}


@pytest.fixture(scope="module", autouse=True)
def test_agents():
    for name, cls in TEST_AGENTS.items():
        register_agent(name, cls)
    yield
    for name in TEST_AGENTS:
        AGENTS.unregister(name)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(data root, cache parent) of a 2-log tiny world; both splits cached once."""
    from irlvla_bench.caching import cache_split
    from irlvla_bench.world import generate_world

    base = tmp_path_factory.mktemp("eval_world")
    root = base / "data"
    generate_world(root, 2, 0, "tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for split in (TWO, ONE):
            cache_split(root, split, base / "metric_cache" / split)
    return root, base / "metric_cache"


@pytest.fixture(scope="module")
def straight_two_stage(world, tmp_path_factory):
    root, caches = world
    StraightAgent.calls = 0
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = evaluate_agent("evaltest_straight", root, TWO, out_dir=out, cache_dir=caches / TWO)
    return result


def _strict_json(path: Path):
    def refuse(constant):
        raise AssertionError(f"{path.name} holds {constant}; it must be strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _comparable(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.drop(columns=["seconds_agent"]).reset_index(drop=True)


def _with_agent_proposals(group, poses_by_token: dict[str, np.ndarray]):
    from dataclasses import replace

    frames = {t: c.with_proposals(Proposals(("agent",), poses_by_token[t][None])) for t, c in group.frames.items()}
    return replace(group, frames=frames)


def _poses(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {r.token: np.asarray(json.loads(r.poses)) for r in rows.itertuples() if r.status == "ok"}


def _ordered_groups(cache_dir: Path, mappings_order: list[str]):
    from irlvla_bench.caching import load_cached_groups

    groups = {g.mappings[0].now: g for g in load_cached_groups(cache_dir)}
    return [groups[now] for now in mappings_order if now in groups]


# ----------------------------------------------------------------------------------------------------------------
# Schema


def test_summary_schema_and_files(straight_two_stage):
    result = straight_two_stage
    out = result.out_dir
    assert not (out / "progress").exists()
    summary = _strict_json(out / "summary.json")
    assert summary == result.summary
    assert summary["schema"] == "irlvla-evaluation/v1"
    assert summary["scorer_version"] == SCORER_VERSION
    assert (summary["split"], summary["aggregation"], summary["traffic"]) == (TWO, "two_stage", "log_replay")
    assert summary["agent"] == {"name": "evaltest_straight", "checkpoint": None, "checkpoint_sha256": None}
    assert summary["seed"] == 0 and len(summary["config_hash"]) == 64
    assert summary["git_commit"] is None or len(summary["git_commit"]) == 40
    assert summary["git_dirty"] in (None, True, False)
    assert {"python", "numpy", "numba", "irlvla_bench", "torch"} <= set(summary["versions"])
    assert Path(summary["data_root"]).is_absolute() and Path(summary["cache_dir"]).is_dir()
    assert summary["created_utc"].endswith("+00:00")
    assert summary["num_tokens"] == 12 and summary["num_failed"] == 0 and summary["failed"] == []
    assert summary["num_mappings"] == 2 and summary["dropped_mappings"] == []
    for block in ("metrics", "stage_one", "stage_two"):
        assert list(summary[block]) == list(SUMMARY_COLUMNS)
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in summary[block].values())
    assert summary["epdms"] == summary["metrics"]["score"]

    rows = result.rows
    assert list(rows.columns) == list(ROW_COLUMNS)
    assert len(rows) == summary["num_tokens"] and rows["token"].is_unique
    assert (rows["status"] == "ok").all() and (rows["error"] == "").all() and rows["aggregated"].all()
    assert set(rows["stage"]) == {"first", "second"}
    assert ((rows["stage"] == "second") == (rows["frame_type"] == "synthetic")).all()
    assert (rows.loc[rows["stage"] == "first", "weight"] == 1.0).all()
    assert all(np.asarray(json.loads(p)).shape == (8, 3) for p in rows["poses"])
    assert (rows["seconds_agent"] >= 0).all()
    parquet = pd.read_parquet(out / "rows.parquet")
    pd.testing.assert_frame_equal(parquet, rows)
    csv = pd.read_csv(out / "rows.csv", keep_default_na=False, na_values=[""])
    assert list(csv.columns) == list(ROW_COLUMNS) and len(csv) == len(rows)
    np.testing.assert_allclose(csv["score"], rows["score"], rtol=1e-15)


def test_two_stage_equals_score_groups(straight_two_stage, world):
    """The runner's aggregation is score_groups on the cached groups with the agent's trajectory as proposal."""
    from irlvla_bench.io.splits import load_split

    root, caches = world
    result = straight_two_stage
    spec = load_split(TWO, root)
    order = [m[0] for m in spec.mappings]
    groups = [_with_agent_proposals(g, _poses(result.rows)) for g in _ordered_groups(caches / TWO, order)]
    assert len(groups) == len(spec.mappings)
    agent = score_groups(groups).agents[0]
    assert result.summary["metrics"] == agent.summary["extended_pdm_score_combined"]
    assert result.summary["stage_one"] == agent.summary["extended_pdm_score_stage_one"]
    assert result.summary["stage_two"] == agent.summary["extended_pdm_score_stage_two"]
    for row in result.rows.itertuples():
        expected = agent.token_columns[row.token]
        assert (row.score, row.weight) == (expected["score"], expected["weight"])
        assert row.two_frame_extended_comfort == expected["two_frame_extended_comfort"]


def test_one_stage_split(world, tmp_path):
    from irlvla_bench.caching import load_cached_cases

    root, caches = world
    result = evaluate_agent("evaltest_straight", root, ONE, out_dir=tmp_path / "run", cache_dir=caches / ONE)
    summary = result.summary
    assert summary["aggregation"] == "one_stage" and summary["stage_one"] is None and summary["stage_two"] is None
    assert summary["metrics"]["two_frame_extended_comfort"] is None
    poses = _poses(result.rows)
    cases = load_cached_cases(caches / ONE)
    assert sorted(c.token for c in cases) == sorted(result.rows["token"])
    scores = [score_frame(c.with_proposals(Proposals(("a",), poses[c.token][None]))) for c in cases]
    assert summary["epdms"] == pytest.approx(np.mean([s.score_single_frame[0] for s in scores]), abs=1e-15)
    for name in SUB_METRICS:
        assert summary["metrics"][name] == pytest.approx(np.mean([s.metrics[name][0] for s in scores]), abs=1e-15)
    assert (result.rows["stage"] == "first").all() and result.rows["two_frame_extended_comfort"].isna().all()


def test_checkpoint_is_recorded_with_its_hash(world, tmp_path):
    import hashlib

    root, caches = world
    checkpoint = tmp_path / "scale.txt"
    checkpoint.write_text("0.5")
    result = evaluate_agent(f"evaltest_checkpoint:{checkpoint}", root, ONE, out_dir=tmp_path / "run",
                            cache_dir=caches / ONE)
    assert result.summary["agent"] == {"name": "evaltest_checkpoint", "checkpoint": str(checkpoint),
                                       "checkpoint_sha256": hashlib.sha256(b"0.5").hexdigest()}
    assert result.summary["source"] == {"kind": "agent", "spec": f"evaltest_checkpoint:{checkpoint}"}
    other = evaluate_agent("evaltest_checkpoint", root, ONE, out_dir=tmp_path / "plain", cache_dir=caches / ONE)
    assert other.summary["config_hash"] != result.summary["config_hash"]


def test_privileged_agents_get_the_case(world, tmp_path, straight_two_stage):
    root, caches = world
    result = evaluate_agent("evaltest_privileged", root, TWO, out_dir=tmp_path / "run", cache_dir=caches / TWO)
    assert result.ok, result.failed
    assert result.epdms != straight_two_stage.epdms


# ----------------------------------------------------------------------------------------------------------------
# Failures


def test_failing_token_is_reported_not_zeroed(world, tmp_path, straight_two_stage):
    from irlvla_bench.io.splits import load_split

    root, caches = world
    spec = load_split(TWO, root)
    bad_now, _, bad_pairs = spec.mappings[0]
    FailingAgent.fail_token = bad_pairs[0][0]  # a second-stage synthetic frame
    result = evaluate_agent("evaltest_failing", root, TWO, out_dir=tmp_path / "run", cache_dir=caches / TWO)
    summary = result.summary
    assert summary["num_failed"] == 1 and not result.ok
    failure = summary["failed"][0]
    assert failure["token"] == FailingAgent.fail_token and failure["error"] == "ValueError: planted failure"
    assert "Traceback" in failure["traceback"] and "compute_trajectory" in failure["traceback"]
    row = result.rows.set_index("token").loc[FailingAgent.fail_token]
    assert row["status"] == "failed" and row["error"] == "ValueError: planted failure" and row["poses"] == ""
    assert all(math.isnan(row[name]) for name in SUB_METRICS + ("score",))
    ok = result.rows[result.rows["status"] == "ok"]
    assert len(ok) == 11 and not ok[SUB_METRICS[0]].isna().any()
    # The mapping holding the failed token leaves the aggregation; the other one is aggregated exactly.
    assert [d["now"] for d in summary["dropped_mappings"]] == [bad_now] and summary["num_mappings"] == 1
    assert FailingAgent.fail_token in summary["dropped_mappings"][0]["tokens"]
    kept = [m[0] for m in spec.mappings[1:]]
    groups = [_with_agent_proposals(g, _poses(straight_two_stage.rows)) for g in _ordered_groups(caches / TWO, kept)]
    assert summary["metrics"] == score_groups(groups).agents[0].summary["extended_pdm_score_combined"]
    assert not result.rows.set_index("token").loc[bad_now, "aggregated"]


def test_cli_exit_codes(world, tmp_path):
    import typer
    from typer.testing import CliRunner

    from irlvla_bench.eval_cli import register

    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    register(app)
    root_dir, caches = world
    common = ["--data", str(root_dir), "--split", TWO, "--cache", str(caches / TWO), "--quiet"]
    runner = CliRunner()
    ok = runner.invoke(app, ["evaluate", "--agent", "evaltest_straight", "--out", str(tmp_path / "ok"), *common])
    assert ok.exit_code == 0, ok.output
    assert "EPDMS" in ok.output and "stage two" in ok.output
    FailingAgent.fail_token = pd.read_parquet(tmp_path / "ok" / "rows.parquet")["token"].iloc[0]
    failed = runner.invoke(app, ["evaluate", "--agent", "evaltest_failing", "--out", str(tmp_path / "bad"), *common])
    assert failed.exit_code == 1, failed.output
    assert FailingAgent.fail_token in failed.output and "planted failure" in failed.output
    wrong = runner.invoke(app, ["evaluate", "--agent", "evaltest_straigt", "--out", str(tmp_path / "x"), *common])
    assert wrong.exit_code == 2 and "evaltest_straight" in wrong.output
    both = runner.invoke(app, ["evaluate", "--agent", "a", "--submission", "b", "--out", str(tmp_path / "y"), *common])
    assert both.exit_code == 2


# ----------------------------------------------------------------------------------------------------------------
# Resume


def test_resume_after_interruption(world, tmp_path, straight_two_stage):
    root, caches = world
    out = tmp_path / "run"
    k = 5
    InterruptingAgent.calls, InterruptingAgent.limit = 0, k
    with pytest.raises(KeyboardInterrupt):
        evaluate_agent("evaltest_interrupting", root, TWO, out_dir=out, cache_dir=caches / TWO)
    progress = out / "progress"
    done = sorted(p for p in progress.glob("*.json") if p.name != "run.json")
    assert len(done) == k and not (out / "summary.json").exists()
    # One token planned but not scored (interrupted between the two writes): rescored, not re-planned.
    partial = json.loads(done[0].read_text())
    partial["scores"] = None
    done[0].write_text(json.dumps(partial))

    # A different configuration must not pick up these records.
    with pytest.raises(ProgressMismatchError):
        evaluate_agent("evaltest_interrupting", root, TWO, out_dir=out, cache_dir=caches / TWO, seed=1)

    InterruptingAgent.calls, InterruptingAgent.limit = 0, 10**6
    seen = []
    result = evaluate_agent("evaltest_interrupting", root, TWO, out_dir=out, cache_dir=caches / TWO,
                            progress=lambda token, n, total: seen.append((token, n, total)))
    assert InterruptingAgent.calls == 12 - k
    assert seen[0] == (None, k - 1, 12) and seen[-1][1:] == (12, 12)
    assert not progress.exists()
    expected = straight_two_stage.rows.copy()
    pd.testing.assert_frame_equal(_comparable(result.rows), _comparable(expected))
    assert result.summary["metrics"] == straight_two_stage.summary["metrics"]


# ----------------------------------------------------------------------------------------------------------------
# Submissions


def test_submission_pickle_and_its_score(world, tmp_path, straight_two_stage):
    root, caches = world
    path = write_submission("evaltest_straight", root, TWO, team="Team", authors="A. Author, B. Author",
                            email="a@example.org", institution="Inst", country="Nowhere", out=tmp_path / "sub.pkl")
    with open(path, "rb") as handle:
        submission = pickle.load(handle)
    assert tuple(submission) == SUBMISSION_KEYS
    assert submission["team_name"] == "Team" and submission["country / region"] == "Nowhere"
    rows = straight_two_stage.rows
    first, second = submission["first_stage_predictions"], submission["second_stage_predictions"]
    assert isinstance(first, list) and len(first) == 1 and isinstance(second, list) and len(second) == 1
    assert set(first[0]) == set(rows.loc[rows["stage"] == "first", "token"])
    assert set(second[0]) == set(rows.loc[rows["stage"] == "second", "token"])
    for poses in list(first[0].values()) + list(second[0].values()):
        assert isinstance(poses, np.ndarray) and poses.shape == (8, 3) and np.isfinite(poses).all()

    scored = evaluate_submission(path, root, TWO, out_dir=tmp_path / "scored", cache_dir=caches / TWO)
    assert scored.summary["source"]["kind"] == "submission" and scored.summary["source"]["unknown_tokens"] == []
    for block in ("metrics", "stage_one", "stage_two"):
        assert scored.summary[block] == straight_two_stage.summary[block]
    pd.testing.assert_frame_equal(_comparable(scored.rows), _comparable(rows))


def test_submission_validation_and_privileged_refusal(world, tmp_path):
    root, caches = world
    good = {"team_name": "T", "authors": "A", "email": "e", "institution": "I", "country / region": "C",
            "first_stage_predictions": [{"a": np.zeros((8, 3)), "b": np.zeros((8, 3))}],
            "second_stage_predictions": [{}]}
    validate_submission(good, ["a", "b"], [])
    bad = dict(good, first_stage_predictions=[{"a": np.zeros((7, 3)), "c": np.full((8, 3), np.nan)}])
    with pytest.raises(SubmissionError) as info:
        validate_submission(bad, ["a", "b", "c"], ["s"])
    text = str(info.value)
    assert "a: prediction must have shape (8, 3), got (7, 3)" in text and "c: prediction contains NaN" in text
    assert "without a prediction: b" in text and "second_stage_predictions: 1 token(s)" in text
    with pytest.raises(SubmissionError, match="missing key 'email'"):
        validate_submission({k: v for k, v in good.items() if k != "email"}, ["a", "b"], [])

    team = dict(team="T", authors="A", email="e", institution="I", country="C")
    with pytest.raises(SubmissionError, match="privileged"):
        write_submission("evaltest_privileged", root, TWO, out=tmp_path / "p.pkl", **team)
    assert not (tmp_path / "p.pkl").exists()
    path = write_submission("evaltest_privileged", root, TWO, out=tmp_path / "p.pkl", allow_privileged=True,
                            cache_dir=caches / TWO, **team)
    assert path.exists()
    FailingAgent.fail_token = next(iter(pickle.loads(path.read_bytes())["first_stage_predictions"][0]))
    with pytest.raises(SubmissionError, match="failed on 1 of 12"):
        write_submission("evaltest_failing", root, TWO, out=tmp_path / "f.pkl", **team)
    assert not (tmp_path / "f.pkl").exists()


def test_submission_missing_token_is_a_failed_token(world, tmp_path):
    root, caches = world
    path = write_submission("evaltest_straight", root, ONE, team="T", authors="A", email="e", institution="I",
                            country="C", out=tmp_path / "sub.pkl")
    submission = pickle.loads(path.read_bytes())
    dropped = sorted(submission["first_stage_predictions"][0])[0]
    del submission["first_stage_predictions"][0][dropped]
    submission["first_stage_predictions"][0]["not_a_token"] = np.zeros((8, 3))
    (tmp_path / "edited.pkl").write_bytes(pickle.dumps(submission))
    result = evaluate_submission(tmp_path / "edited.pkl", root, ONE, out_dir=tmp_path / "run", cache_dir=caches / ONE)
    assert [f["token"] for f in result.failed] == [dropped]
    assert "no prediction" in result.failed[0]["error"]
    assert result.summary["source"]["unknown_tokens"] == ["not_a_token"]


# ----------------------------------------------------------------------------------------------------------------
# Ray


@pytest.mark.slow
def test_two_ray_workers_give_the_same_rows(world, tmp_path, straight_two_stage, monkeypatch):
    pytest.importorskip("ray")
    root, caches = world
    # Ray workers unpickle the test agent by reference to this module: let them import it.
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH", "")])))
    result = evaluate_agent(StraightAgent(), root, TWO, out_dir=tmp_path / "ray", cache_dir=caches / TWO,
                            workers=2)
    assert result.ok, result.failed
    pd.testing.assert_frame_equal(_comparable(result.rows), _comparable(straight_two_stage.rows))
    assert result.summary["metrics"] == straight_two_stage.summary["metrics"]
