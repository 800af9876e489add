"""PPO's data side (agents/rl/world.py, rewards.py), the end-to-end run from checkpoints and its CLI, the RL agent
and the reward-hacking frames, on the tiny generated world of the agent tests."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import torch

from agent_fixtures import agent_world
from agents.rl.rewards import VALUE_NAMES, ExactScorer, RWMScorer, ScoreReward, combine, exact_values, parse_weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@lru_cache(maxsize=None)
def _cases(split: str = "navtrain"):
    from irlvla_bench.caching import cache_split, load_cached_cases

    folder = agent_world().parent / "metric_cache" / split
    cache_split(agent_world(), split, folder)
    return folder, load_cached_cases(folder)


def _random_rwm():
    from agents.rwm.config import preset
    from agents.rwm.features import raster_channels
    from agents.rwm.predict import RewardModel
    from agents.rwm.train import build_model

    cfg = preset("tiny")
    torch.manual_seed(0)
    return RewardModel(build_model(cfg, len(raster_channels(cfg.encoder.raster))), cfg)


def _candidates(n: int = 6) -> np.ndarray:
    t = 0.5 * np.arange(1, 9)
    poses = np.zeros((n, 8, 3))
    poses[:, :, 0] = np.linspace(0.0, 12.0, n)[:, None] * t
    poses[:, :, 1] = np.linspace(-0.5, 0.5, n)[:, None] * t
    return poses


# ------------------------------------------------------------------------------------------ rewards


def test_exact_values_are_the_labels_of_the_rwm():
    """Same candidates, same numbers as the labeller's rows (the RWM's targets): one definition of the reward."""
    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_case, poses_of

    _, cases = _cases()
    case = cases[0]
    table = label_case(case, _candidates(4), LabelConfig(candidates=CandidateConfig(perturbations=6)))
    values = exact_values(case, poses_of(table))
    for name in VALUE_NAMES:
        np.testing.assert_allclose(values[name], table[name].to_numpy(dtype=float), rtol=0, atol=1e-12,
                                   err_msg=name)
    # The cached-scene path gives the same numbers.
    scorer = ExactScorer([case])
    again = scorer.score(0, poses_of(table))
    np.testing.assert_array_equal(again["epdms"], values["epdms"])


def test_reward_combinations():
    values = {name: np.array([1.0, 0.5]) for name in VALUE_NAMES}
    values["extended_comfort"] = np.array([np.nan, 0.0])
    assert combine(values, ()).tolist() == [1.0, 0.5]
    weights = parse_weights("epdms=1, ego_progress=0.5,extended_comfort=2")
    assert weights == (("epdms", 1.0), ("ego_progress", 0.5), ("extended_comfort", 2.0))
    assert combine(values, weights).tolist() == [1.0 + 0.5 + 2.0, 0.5 + 0.25 + 0.0]
    with pytest.raises(ValueError, match="unknown reward value"):
        parse_weights("speed=1")
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        parse_weights("epdms")


def test_rwm_and_exact_rewards_score_candidate_batches():
    _, cases = _cases()
    poses = np.stack([_candidates(5), _candidates(5)[::-1]])  # (2 scenes, 5 candidates, 8, 3)
    exact = ScoreReward(ExactScorer(cases[:2]))(np.array([0, 1]), poses)
    assert exact.shape == (2, 5) and np.all((exact >= 0) & (exact <= 1))
    rwm = RWMScorer(_random_rwm(), cases[:2])
    predicted = ScoreReward(rwm)(np.array([0, 1]), poses)
    assert predicted.shape == (2, 5) and np.all((predicted >= 0) & (predicted <= 1))
    values = rwm.score(1, poses[1])
    assert set(values) == set(VALUE_NAMES) and all(v.shape == (5,) for v in values.values())


# ------------------------------------------------------------------------------------------ end to end


@lru_cache(maxsize=None)
def _trained(tmp_root: str) -> tuple[str, str]:
    """IL start (random small policy) and a 2-iteration exact-reward PPO run through the CLI."""
    from pathlib import Path

    from typer.testing import CliRunner

    from agents.rl.toy import tiny_policy_checkpoint
    from irlvla_bench.cli import app

    il = tiny_policy_checkpoint(tmp_root)
    out = Path(tmp_root) / "rl"
    result = CliRunner().invoke(app, ["train", "rl", "--il", str(il), "--data", str(agent_world()), "--out", str(out),
                                      "--reward", "exact", "--iterations", "2", "--scenes-per-iteration", "4",
                                      "--cache-dir", str(_cases()[0]), "--threads", "1"])
    assert result.exit_code == 0, result.output
    return str(il), str(out)


def test_cli_run_writes_a_policy_that_loads_as_an_agent_and_resumes(tmp_path_factory):
    from agents.base import make_agent
    from agents.contract import contract_inputs
    from agents.rl.ppo import Args, read_log, run

    il, out = _trained(str(tmp_path_factory.mktemp("rl_e2e")))
    rows = read_log(f"{out}/log.csv")
    assert [int(r["iteration"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["executed_exact_epdms"]) <= 1.0 for r in rows)
    # The policy is an agent; its planner differs from the IL start, its trunk does not.
    rl_agent = make_agent(f"irlvla_rl:{out}/policy.pt")
    il_agent = make_agent(f"irlvla_rl:{il}")
    rl_state, il_state = rl_agent.model.state_dict(), il_agent.model.state_dict()
    assert any(not torch.equal(rl_state[k], il_state[k]) for k in rl_state if k.startswith("planner."))
    assert all(torch.equal(rl_state[k], il_state[k]) for k in rl_state if not k.startswith("planner."))
    inputs = contract_inputs(agent_world(), "navhard_two_stage", max_scenes=2)
    for agent in (rl_agent, il_agent):
        agent.seed(0)
        assert agent.compute_trajectories(inputs)[0].poses.shape == (8, 3)
    assert rl_agent.meta["iterations"] == 2
    # Resume: two more iterations continue the run.
    args = Args(il=il, data=str(agent_world()), reward="exact", iterations=4, scenes_per_iteration=4,
                cache_dir=str(_cases()[0]), threads=1)
    messages: list[str] = []
    result = run(args, out, say=messages.append)
    assert result.resumed_from == 2 and [int(r["iteration"]) for r in result.rows] == [1, 2, 3, 4]
    assert "(cached, " in messages[0]  # the scene set of the first run was stored beside the metric cache


def test_cli_errors_are_reported(tmp_path):
    from typer.testing import CliRunner

    from irlvla_bench.cli import app

    result = CliRunner().invoke(app, ["train", "rl", "--il", str(tmp_path / "missing.pt"), "--data",
                                      str(agent_world()), "--out", str(tmp_path / "o"), "--reward", "rwm"])
    assert result.exit_code == 2 and "needs Args.rwm" in result.output


def test_hacking_frames_for_two_policies(tmp_path_factory):
    from agents.rl.hacking import cached_cases, hacking_frames, policy_poses, write_hacking
    from irlvla_bench.caching import cache_split

    il, out = _trained(str(tmp_path_factory.mktemp("rl_e2e")))
    cache = agent_world().parent / "metric_cache" / "navhard_two_stage"
    cache_split(agent_world(), "navhard_two_stage", cache)
    poses_il = policy_poses(il, agent_world(), "navhard_two_stage")
    poses_rl = policy_poses(f"{out}/policy.pt", agent_world(), "navhard_two_stage")
    assert set(poses_il) == set(poses_rl) and len(poses_il) >= 2
    frames = hacking_frames(poses_il, poses_rl, cached_cases(cache, list(poses_il)), _random_rwm())
    for frame in (frames.rwm_a, frames.rwm_b, frames.exact_a, frames.exact_b):
        assert list(frame.columns) == list(VALUE_NAMES) and frame.index.name == "token"
        assert sorted(frame.index) == sorted(poses_il)
    hacking_dir = tmp_path_factory.mktemp("hacking")
    table = write_hacking(frames, hacking_dir)
    assert list(table.index) == list(VALUE_NAMES)
    page = (hacking_dir / "reward_hacking.html").read_text()
    markdown = (hacking_dir / "reward_hacking.md").read_text()
    for metric in VALUE_NAMES:  # every row reaches the pages a user opens from the pipeline's index
        assert metric in page and f"| {metric} |" in markdown
    exact_gain = frames.exact_b["epdms"].mean() - frames.exact_a["epdms"].mean()
    assert table.loc["epdms", "exact_gain"] == pytest.approx(exact_gain, abs=1e-12)
    assert isinstance(table, pd.DataFrame)


def test_il_sampler_for_the_labeller(monkeypatch, tmp_path):
    from agents.rl import samplers
    from agents.rl.toy import tiny_policy_checkpoint
    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_case

    _, cases = _cases()
    monkeypatch.setenv(samplers.ENV_CHECKPOINT, str(tiny_policy_checkpoint(str(tmp_path))))
    monkeypatch.setenv(samplers.ENV_DATA, str(agent_world()))
    monkeypatch.setenv(samplers.ENV_SPLIT, "navtrain")
    a = samplers.il_sampler(cases[0], 25, 3)  # more than K = 20: two chains
    assert a.shape == (25, 8, 3) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, samplers.il_sampler(cases[0], 25, 3))
    assert not np.array_equal(a, samplers.il_sampler(cases[0], 25, 4))
    config = LabelConfig(candidates=CandidateConfig(perturbations=2, il_samples=5,
                                                    il_sampler="agents.rl.samplers:il_sampler"))
    table = label_case(cases[0], _candidates(2), config)
    assert (table["source"] == "il").sum() == 5


def test_ec_against_a_given_previous_plan_matches_the_labels_for_the_experts_plan():
    """Given the expert's previous plan, the own-previous-plan EC path reproduces the labels' EC exactly, and the
    RWM's previous-plan input built from it is the one the RWM builds for the expert."""
    from agents.rl.rewards import previous_in_current_frame
    from agents.rwm.features import previous_in_current_frame as rwm_previous
    from evaluators.epdms.config import NAVSIM_V2
    from irlvla_bench.labelling.trajectories import previous_plan

    _, cases = _cases()
    checked = 0
    for case in cases:
        plan = previous_plan(case, NAVSIM_V2.max_prev_frame_offset_s)
        if plan is None:
            continue
        expert = exact_values(case, _candidates(5))
        given = exact_values(case, _candidates(5), previous=plan[0])
        np.testing.assert_array_equal(given["extended_comfort"], expert["extended_comfort"])
        np.testing.assert_array_equal(given["epdms"], expert["epdms"])
        np.testing.assert_allclose(previous_in_current_frame(case, plan[0]), rwm_previous(case), atol=1e-9)
        checked += 1
        if checked == 3:
            break
    assert checked == 3
    # A jerky previous plan breaks EC for candidates the expert's plan accepts.
    jerky = plan[0].copy()
    jerky[:, 1] += np.array([0, 2, -2, 2, -2, 2, -2, 2])
    assert exact_values(case, _candidates(5), previous=jerky)["extended_comfort"].sum() == 0.0


def test_previous_scene_index_pairs_consecutive_frames():
    from agents.rl.world import previous_scene_index

    _, cases = _cases()
    prev = previous_scene_index(cases)
    assert (prev >= 0).sum() > len(cases) // 2
    for i in np.flatnonzero(prev >= 0):
        assert cases[prev[i]].log_name == cases[i].log_name
        assert cases[i].time_us - cases[prev[i]].time_us == 500_000


def test_previous_scene_index_follows_the_navhard_pairs_of_synthetic_frames():
    """Synthetic frames share their log and time stamp with the original frame and the other perturbations:
    only the split's (now, prev) pairs say which previous frame belongs to which current one."""
    from agents.rl.world import previous_scene_index, split_previous_pairs

    _, cases = _cases("navhard_two_stage")
    tokens = [c.token for c in cases]
    pairs = split_previous_pairs(agent_world(), "navhard_two_stage")
    assert pairs and set(pairs) <= set(tokens)
    prev = previous_scene_index(cases, tokens, pairs)
    for now, before in pairs.items():
        assert tokens[prev[tokens.index(now)]] == before
    by_time_only = previous_scene_index(cases)
    paired = [tokens.index(t) for t in pairs]
    # The time look-up cannot tell the perturbations apart: it gets some synthetic pairs wrong.
    assert any(tokens[by_time_only[i]] != pairs[tokens[i]] for i in paired if by_time_only[i] >= 0)


def test_fast_evaluation_equals_the_agent_evaluation(tmp_path_factory):
    """Planner-only poses on the IL trunk's cached features are the agent's poses, and their submission-path
    evaluation is the runner's evaluation of the agent (what bench/rl_validate.py relies on)."""
    from agents.rl.fast_eval import evaluate_poses, planner_poses
    from agents.rl.hacking import policy_poses
    from agents.rl.world import cached_scene_set, load_policy_model, sha256_file
    from irlvla_bench.caching import cache_split
    from irlvla_bench.evaluation import evaluate_agent

    root = tmp_path_factory.mktemp("fast_eval")
    il, out = _trained(str(root))
    policy = f"{out}/policy.pt"
    cache = agent_world().parent / "metric_cache" / "navhard_two_stage"
    cache_split(agent_world(), "navhard_two_stage", cache)
    model, _ = load_policy_model(il)
    scenes, _ = cached_scene_set(model, sha256_file(il), agent_world(), "navhard_two_stage", cache)
    fast = planner_poses(policy, scenes)
    agent = policy_poses(policy, agent_world(), "navhard_two_stage")
    assert set(fast) == set(agent)
    assert max(np.abs(fast[t] - agent[t]).max() for t in agent) < 1e-4
    fast_eval = evaluate_poses(fast, "fast", agent_world(), "navhard_two_stage", cache, root / "fast")
    runner = evaluate_agent(f"irlvla_rl:{policy}", agent_world(), "navhard_two_stage", out_dir=root / "agent",
                            cache_dir=cache)
    fast_epdms = json.loads((fast_eval / "summary.json").read_text())["epdms"]
    assert fast_epdms == pytest.approx(runner.epdms, abs=1e-6)
