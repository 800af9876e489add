"""PPO on the diffusion planner (agents/rl/ppo.py): log-probability bookkeeping, per-group advantages, the clipped
loss on known numbers, a real learning signal on a toy reward, resume after a crash, two processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.rl.ppo import (LOG_COLUMNS, Args, Problem, clipped_surrogate, collect, explained_variance,
                           group_advantages, ppo_losses, read_log, select_features, train)
from agents.rl.toy import progress_reward, toy_setup

PROJECT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _args(**changes) -> Args:
    base = dict(iterations=3, scenes_per_iteration=4, samples_per_scene=2, num_minibatches=2, update_epochs=2,
                eval_every=0, learning_rate=1e-3, kl_coef=0.0, seed=0)
    base.update(changes)
    return Args(**base)


# ------------------------------------------------------------------------------------------ log-probabilities


def test_reevaluated_log_probs_equal_the_sampling_ones():
    policy, _, problem = toy_setup(4)
    planner = policy.planner
    features = problem.features
    sample = planner.sample_with_log_probs(features, torch.Generator().manual_seed(3), min_std=0.05)
    again = planner.evaluate_log_probs(features, sample.chain, sample.mode, sample.timesteps, min_std=0.05)
    torch.testing.assert_close(again.step_log_probs, sample.step_log_probs, rtol=0, atol=1e-3)
    torch.testing.assert_close(again.mode_log_prob, sample.mode_log_prob, rtol=0, atol=1e-5)
    torch.testing.assert_close(again.means, sample.means, rtol=0, atol=1e-5)
    # The log-probability of a stored state is that of the Gaussian it was drawn from.
    x, mean, std = sample.chain[:, 1], sample.means[:, 0], float(sample.stds[0])
    direct = (-0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(dim=(-2, -1))
    torch.testing.assert_close(sample.step_log_probs[:, 0], direct, rtol=0, atol=1e-3)


def test_ratio_is_one_before_the_first_update():
    args = _args()
    policy, reference, problem = toy_setup(8)
    scenes = np.arange(args.scenes_per_iteration)
    rollout = collect(args, policy, reference, problem, scenes, torch.Generator().manual_seed(0))
    terms = ppo_losses(args, policy, problem, rollout, np.arange(rollout.chain.shape[0]))
    assert float(terms.max_ratio_error) < 1e-3
    assert float(terms.clipfrac) == 0.0 and float(terms.mode_clipfrac) == 0.0
    assert abs(float(terms.approx_kl)) < 1e-6 and abs(float(terms.mode_approx_kl)) < 1e-9
    # Policy and reference start identical: no KL toward the IL policy yet.
    assert float(terms.kl_il.detach()) < 1e-6 and abs(float(terms.kl_il_mode.detach())) < 1e-6


def test_rollout_shapes_and_rewards():
    args = _args(scenes_per_iteration=3, samples_per_scene=2)
    policy, reference, problem = toy_setup(8)
    rollout = collect(args, policy, reference, problem, np.array([1, 4, 6]), torch.Generator().manual_seed(0))
    k = policy.planner.cfg.num_anchors
    assert rollout.rewards.shape == (6, k) and rollout.advantages.shape == (6, k)
    assert rollout.chain_scene.tolist() == [1, 1, 4, 4, 6, 6]
    poses = policy.planner.denormalize(rollout.chain[:, -1]).double().numpy()
    np.testing.assert_allclose(rollout.rewards.numpy(), progress_reward(None, poses), rtol=1e-5)
    # Advantages are normalised within each scene's 2 x K candidates.
    adv = rollout.advantages.reshape(3, 2 * k)
    np.testing.assert_allclose(adv.mean(dim=1).numpy(), 0.0, atol=1e-5)
    # The denoising steps' advantages compare each anchor with itself across the scene's two chains, on the
    # group's scale: the two chains' values are opposite, anchor by anchor.
    step = rollout.step_advantages.reshape(3, 2, k)
    np.testing.assert_allclose((step[:, 0] + step[:, 1]).numpy(), 0.0, atol=1e-5)
    r = rollout.rewards.reshape(3, 2, k)
    scale = r.reshape(3, -1).std(dim=1, unbiased=False).clamp_min(args.adv_std_floor)
    torch.testing.assert_close(step[:, 0], (r[:, 0] - r[:, 1]) / 2 / scale[:, None])


# ------------------------------------------------------------------------------------------ known numbers


def test_group_advantages_are_normalised_per_group():
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0], [10.0, 10.0, 10.0, 14.0], [0.5, 0.5, 0.5, 0.5]])
    adv = group_advantages(rewards)
    expected0 = (torch.tensor([0.0, 1.0, 2.0, 3.0]) - 1.5) / math.sqrt(1.25)
    torch.testing.assert_close(adv[0], expected0)
    torch.testing.assert_close(adv[1], torch.tensor([-1.0, -1.0, -1.0, 3.0]) / math.sqrt(3.0))
    assert torch.equal(adv[2], torch.zeros(4))  # nothing to learn from a scene whose candidates tie
    # Groups do not leak into each other: rescaling and shifting one group leaves the others unchanged.
    other = rewards.clone()
    other[1] = other[1] * 100 + 7
    moved = group_advantages(other)
    torch.testing.assert_close(moved[0], adv[0])
    torch.testing.assert_close(moved[1], adv[1])
    # The std floor keeps tiny differences tiny; a value baseline replaces the group mean.
    small = torch.tensor([[0.500, 0.501]])
    torch.testing.assert_close(group_advantages(small, std_floor=0.05), torch.tensor([[-0.01, 0.01]]))
    torch.testing.assert_close(group_advantages(torch.tensor([[1.0, 3.0]]), baseline=torch.tensor([0.0])),
                               torch.tensor([[1.0, 3.0]]))


def test_clipped_surrogate_on_known_numbers():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5, 0.5, 1.1])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0, 2.0])
    loss = clipped_surrogate(ratio, adv, 0.2)
    # max(-A r, -A clip(r)): a gain beyond the clip is not rewarded, a loss beyond it is still paid in full.
    torch.testing.assert_close(loss, torch.tensor([-0.5, 1.0, -1.2, 1.5, 0.8, -2.2]))
    assert abs(float(loss.mean()) - (-0.5 + 1.0 - 1.2 + 1.5 + 0.8 - 2.2) / 6) < 1e-6


def test_explained_variance():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(y, y) == 1.0
    assert explained_variance(np.full(4, 2.5), y) == 0.0
    assert math.isnan(explained_variance(y, np.ones(4)))


def test_args_validation_and_round_trip():
    args = Args(reward="exact", reward_weights=(("epdms", 1.0), ("ego_progress", 0.5)))
    assert Args.from_dict(args.to_dict()) == args
    with pytest.raises(ValueError, match="reward must be one of"):
        Args(reward="simulator")
    with pytest.raises(ValueError, match="num_minibatches exceeds"):
        Args(scenes_per_iteration=1, samples_per_scene=1, num_minibatches=2, step_baseline="group")
    with pytest.raises(ValueError, match="needs samples_per_scene >= 2"):
        Args(samples_per_scene=1)


# ------------------------------------------------------------------------------------------ learning signal


def test_ppo_increases_a_progress_reward(tmp_path):
    args = _args(iterations=8, scenes_per_iteration=8, samples_per_scene=2, update_epochs=4, eval_every=1,
                 eval_scenes=8)
    policy, reference, problem = toy_setup(8)
    result = train(args, policy, reference, problem, tmp_path)
    rows = result.rows
    first, last = rows[0], rows[-1]
    # The deterministic (test-time) plan progresses further, and so do the sampled candidates.
    assert last["eval_reward"] > first["eval_reward"] + 0.1, [r["eval_reward"] for r in rows]
    assert np.mean([r["reward_mean"] for r in rows[-3:]]) > first["reward_mean"] + 0.02
    # The policy moved away from its IL start, and the logs hold every column.
    assert last["kl_il"] > 0
    logged = read_log(tmp_path / "log.csv")
    assert [int(r["iteration"]) for r in logged] == list(range(1, 9))
    assert list(logged[0]) == list(LOG_COLUMNS)


# ------------------------------------------------------------------------------------------ resume


class _Crash(RuntimeError):
    pass


def test_resume_after_a_crash_reproduces_the_next_losses(tmp_path):
    args = _args(iterations=4)
    policy, reference, problem = toy_setup(8)
    straight = train(args, policy, reference, problem, tmp_path / "straight").rows

    calls = {"n": 0}

    def crashing(scenes, poses, previous=None):
        calls["n"] += 1
        if calls["n"] == 3:  # in the middle of iteration 3, after iteration 2's checkpoint
            raise _Crash("killed")
        return progress_reward(scenes, poses, previous)

    policy, reference, problem = toy_setup(8)
    with pytest.raises(_Crash):
        train(args, policy, reference, Problem(problem.features, crashing), tmp_path / "resumed")
    assert [int(r["iteration"]) for r in read_log(tmp_path / "resumed" / "log.csv")] == [1, 2]

    policy, reference, problem = toy_setup(8)  # a fresh process: new objects, state from the checkpoint
    resumed = train(args, policy, reference, Problem(problem.features, progress_reward), tmp_path / "resumed")
    assert resumed.resumed_from == 2
    for a, b in zip(straight[2:], resumed.rows[2:]):
        for name in ("policy_loss", "mode_loss", "value_loss", "approx_kl", "reward_mean", "clipfrac"):
            assert a[name] == b[name], (a["iteration"], name, a[name], b[name])
    logged = read_log(tmp_path / "resumed" / "log.csv")
    assert [int(r["iteration"]) for r in logged] == [1, 2, 3, 4]


def test_resume_refuses_changed_settings(tmp_path):
    policy, reference, problem = toy_setup(8)
    train(_args(iterations=1), policy, reference, problem, tmp_path)
    policy, reference, problem = toy_setup(8)
    with pytest.raises(ValueError, match="cannot resume with different settings.*clip_coef"):
        train(_args(iterations=2, clip_coef=0.1), policy, reference, problem, tmp_path)


# ------------------------------------------------------------------------------------------ two processes


def test_two_processes_stay_in_sync(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(PROJECT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "agents.rl.toy", str(tmp_path), "2"]
    done = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    # Gradients are averaged over the processes, so both hold the same parameters.
    assert (tmp_path / "params-0.txt").read_text() == (tmp_path / "params-1.txt").read_text()
    payload = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert payload["world_size"] == 2 and len(payload["rng"]) == 2
    rows = read_log(tmp_path / "log.csv")
    assert [float(r["candidates"]) for r in rows] == [2 * 4 * 2 * 6.0] * 2  # processes x scenes x samples x K


def test_rewards_get_the_policys_own_previous_plans():
    from agents.rl.ppo import greedy_trajectories

    args = _args(scenes_per_iteration=3)
    policy, reference, problem = toy_setup(8)
    seen = {}

    def recording(scenes, poses, previous=None):
        seen["previous"] = previous
        return progress_reward(scenes, poses)

    previous_index = np.array([-1, 0, 1, 2, -1, 4, 5, 6])  # scene i follows scene i - 1 within two "logs"
    problem = Problem(problem.features, recording, previous=previous_index)
    collect(args, policy, reference, problem, np.array([0, 1, 5]), torch.Generator().manual_seed(0))
    prev = seen["previous"]
    assert prev.shape == (3, 8, 3) and np.isnan(prev[0]).all() and np.isfinite(prev[1:]).all()
    # They are the deterministic plans at the previous frames (scene 0 for scene 1, scene 4 for scene 5).
    seed_free = greedy_trajectories(policy.planner, select_features(problem.features, [0, 4]), 123)
    assert np.abs(prev[1:] - seed_free).max() < 5.0  # same frames, other anchor noise: close, not equal
    collect(_args(scenes_per_iteration=3, own_previous_plan=False), policy, reference, problem, np.array([0, 1, 5]),
            torch.Generator().manual_seed(0))
    assert seen["previous"] is None
