"""Baseline agents (constant velocity, human, PDM-Closed, ego-status MLP) and the agent registry."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from agents.base import (AGENTS, AgentInput, CheckpointRequiredError, EgoStatus, Trajectory, available_agents,
                         make_agent, register_agent)
from agents.baselines.human import HumanAgent, NoHumanFutureError
from agents.baselines.pdm_closed import PDMClosedAgent, reference_poses
from agents.baselines.poses import resample, to_ego_frame
from agents.contract import synthetic_inputs
from agent_fixtures import agent_world, ego_mlp_checkpoint, world_inputs
from irlvla_bench.examples import make_case
from irlvla_bench.io.scoring_case import parse_case
from irlvla_bench.registry import UnknownNameError


def _input(velocity=(0.0, 0.0), *, case=None, token="t" * 16) -> AgentInput:
    status = EgoStatus(pose=np.zeros(3), velocity=np.asarray(velocity, float), acceleration=np.zeros(2),
                       driving_command=np.array([0.0, 1.0, 0.0, 0.0]))
    return AgentInput(token=case.token if case is not None else token, ego_statuses=(status,), cameras=({},),
                      lidars=(None,), privileged=case)


def _case(scenario="lead", seed=0):
    return parse_case(make_case(scenario, seed))


# ---------------------------------------------------------------------------------------------- constant velocity


def test_constant_velocity_gives_the_analytic_poses():
    agent = make_agent("constant_velocity")
    poses = agent.compute_trajectory(_input((3.0, 4.0))).poses  # |v| = 5 m/s
    expected = np.column_stack([5.0 * 0.5 * np.arange(1, 9), np.zeros(8), np.zeros(8)])
    np.testing.assert_array_equal(poses, expected)
    # Any speed: float32 like NAVSIM's agent, heading and lateral offset always zero.
    v = np.array([7.3, -1.2])
    poses = agent.compute_trajectory(_input(v)).poses
    speed = float(np.sqrt((v.astype(np.float32) ** 2).sum()))
    np.testing.assert_array_equal(poses[:, 0], (np.arange(1, 9) * 0.5 * speed).astype(np.float32))
    np.testing.assert_allclose(poses[:, 0], np.arange(1, 9) * 0.5 * np.hypot(*v), rtol=1e-6)
    assert not poses[:, 1:].any()
    assert agent.sensor_config().history_frames == 1 and not agent.sensor_config().uses_sensors


def test_constant_velocity_standing_still():
    assert not make_agent("constant_velocity").compute_trajectory(_input()).poses.any()


# ---------------------------------------------------------------------------------------------- PDM-Closed


def test_pdm_closed_reproduces_the_reference_poses():
    case = _case("lead")
    assert case.pdm_reference_interval_s == pytest.approx(0.1)
    poses = make_agent("pdm_closed").compute_trajectory(_input(case=case)).poses
    # Independent expectation: the reference at 0.5, 1.0, ... 4.0 s (every 5th state), rotated into the ego frame.
    x0, y0, h0 = case.ego.rear_axle
    ref = case.pdm_reference[5:41:5]
    c, s = np.cos(h0), np.sin(h0)
    expected = np.column_stack([c * (ref[:, 0] - x0) + s * (ref[:, 1] - y0),
                                -s * (ref[:, 0] - x0) + c * (ref[:, 1] - y0),
                                np.arctan2(np.sin(ref[:, 2] - h0), np.cos(ref[:, 2] - h0))])
    np.testing.assert_allclose(poses, expected, atol=1e-9)
    assert poses[-1, 0] > poses[0, 0] > 0  # drives forward
    assert np.abs(poses[:, 1:]).max() < 1e-6  # the procedural reference keeps the lane


def test_resampling_unwraps_headings_across_pi():
    # Turning left through the +-pi seam: 3.0 rad -> 3.3 rad, stored wrapped as -2.98 rad.
    headings = np.array([3.0, 3.1, 3.2, 3.3])
    poses = np.column_stack([np.arange(4.0), np.zeros(4), np.arctan2(np.sin(headings), np.cos(headings))])
    mid = resample(poses, 1.0, np.array([1.5, 2.5]))
    np.testing.assert_allclose(np.cos(mid[:, 2]), np.cos([3.15, 3.25]), atol=1e-12)
    np.testing.assert_allclose(np.sin(mid[:, 2]), np.sin([3.15, 3.25]), atol=1e-12)
    np.testing.assert_allclose(mid[:, 0], [1.5, 2.5])
    with pytest.raises(ValueError, match="asked for"):
        resample(poses, 1.0, np.array([3.5]))


def test_pdm_closed_interpolates_between_knots_and_refuses_short_references():
    case = _case("free")
    # Keep every 4th state: 0.4 s knots, so 0.5 s, 1.0 s, ... fall between them.
    coarse = replace(case, pdm_reference=case.pdm_reference[::4], pdm_reference_interval_s=0.4)
    fine = reference_poses(case)
    np.testing.assert_allclose(reference_poses(coarse), fine, atol=1e-6)  # the reference is a straight line
    short = replace(case, pdm_reference=case.pdm_reference[:30])
    with pytest.raises(ValueError, match="PDM-Closed reference"):
        reference_poses(short)


def test_to_ego_frame_of_the_origin_is_zero():
    origin = np.array([10.0, -3.0, 2.5])
    np.testing.assert_allclose(to_ego_frame(origin, origin[None]), [[0.0, 0.0, 0.0]], atol=1e-12)


# ---------------------------------------------------------------------------------------------- human


def test_human_returns_the_logged_future():
    case = _case("lead")
    poses = make_agent("human").compute_trajectory(_input(case=case)).poses
    np.testing.assert_array_equal(poses, case.human_future)


def test_human_on_synthetic_frames_falls_back_to_pdm_closed():
    case = replace(_case("cone"), scene_type="synthetic", human_future=None)
    x = _input(case=case)
    np.testing.assert_array_equal(HumanAgent().compute_trajectory(x).poses,
                                  PDMClosedAgent().compute_trajectory(x).poses)
    with pytest.raises(NoHumanFutureError, match="no logged human future"):
        HumanAgent(on_synthetic="error").compute_trajectory(x)
    with pytest.raises(ValueError, match="on_synthetic"):
        HumanAgent(on_synthetic="constant_velocity")


def test_privileged_agents_check_their_case():
    for name in ("human", "pdm_closed"):
        agent = make_agent(name)
        assert agent.requires_privileged
        with pytest.raises(ValueError, match="must be the frame's ScoringCase"):
            agent.compute_trajectory(_input())
        case = _case()
        with pytest.raises(ValueError, match="the scoring case is for token"):
            agent.compute_trajectory(replace(_input(case=case), token="another_token_00"))


def test_privileged_baselines_on_generated_world_frames():
    cases = [x.privileged for x in world_inputs()]  # built by the metric-caching code
    assert {c.scene_type for c in cases} == {"original", "synthetic"}
    for case in cases:
        x = _input(case=case)
        pdm = make_agent("pdm_closed").compute_trajectory(x).poses
        # NAVSIM caches the reference at 0.1 s: the agent's poses are reference states 5, 10, ..., 40.
        np.testing.assert_allclose(pdm, to_ego_frame(case.ego.rear_axle, case.pdm_reference[5:41:5]), atol=1e-9)
        human = make_agent("human").compute_trajectory(x).poses
        np.testing.assert_array_equal(human, case.human_future if case.is_original else pdm)


# ---------------------------------------------------------------------------------------------- ego MLP


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def test_ego_mlp_targets_are_the_logged_future_in_the_ego_frame():
    from agents.baselines.ego_mlp_data import future_poses, training_set
    from agents.inputs import relative_pose
    from irlvla_bench.caching import load_scene
    from irlvla_bench.io.splits import list_scenes, load_split

    data = training_set(agent_world(), "navtrain")
    assert len(data) >= 10 and data.features.shape == (len(data), 4 * 7 + 4) and data.targets.shape[1:] == (8, 3)
    ref = list_scenes(agent_world(), load_split("navtrain", agent_world())).scenes[0]
    scene = load_scene(ref)
    target = future_poses(scene)
    cur = scene.frames[scene.num_history - 1].ego_pose
    np.testing.assert_allclose(target[0], relative_pose(cur, scene.frames[scene.num_history].ego_pose))
    np.testing.assert_allclose(target[7], relative_pose(cur, scene.frames[scene.num_history + 7].ego_pose))
    np.testing.assert_allclose(data.targets[data.tokens.index(ref.token)], target)


def test_ego_mlp_training_loss_decreases(torch):
    from agents.baselines.ego_mlp import EgoMLPConfig, TrainConfig, train_ego_mlp
    from agents.baselines.ego_mlp_data import training_set

    data = training_set(agent_world(), "navtrain")
    _, result = train_ego_mlp(data, EgoMLPConfig(hidden=32, layers=2), TrainConfig(epochs=60))
    assert len(result.losses) == 60 and result.samples == len(data)
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    # Seeded: the same config trains the same weights.
    _, again = train_ego_mlp(data, EgoMLPConfig(hidden=32, layers=2), TrainConfig(epochs=60))
    assert again.losses == result.losses


def test_ego_mlp_checkpoint_round_trips(torch, tmp_path):
    from agents.baselines.ego_mlp import load_checkpoint, save_checkpoint

    path = ego_mlp_checkpoint()
    model, payload = load_checkpoint(path)
    assert payload["format"] == "irlvla-bench/ego-mlp/v1"
    assert set(payload["normalisation"]) == {"feature_mean", "feature_std", "target_mean", "target_std"}
    assert payload["config"] == {"history_frames": 4, "hidden": 32, "layers": 2}
    again = save_checkpoint(tmp_path / "copy.pt", model)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temporary behind
    inputs = synthetic_inputs(3, seed=1)
    a = make_agent(f"ego_mlp:{path}").compute_trajectories(inputs)
    b = make_agent(f"ego_mlp:{again}").compute_trajectories(inputs)
    for x, y in zip(a, b):
        assert isinstance(x, Trajectory)
        np.testing.assert_array_equal(x.poses, y.poses)
    single = make_agent(f"ego_mlp:{path}").compute_trajectory(inputs[0])
    np.testing.assert_allclose(single.poses, a[0].poses, atol=1e-5)


def test_ego_mlp_agent_errors(torch, tmp_path):
    with pytest.raises(CheckpointRequiredError, match="ego_mlp:PATH"):
        make_agent("ego_mlp")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_agent(f"ego_mlp:{tmp_path / 'missing.pt'}")
    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "something-else"}, bogus)
    with pytest.raises(ValueError, match="not an ego_mlp checkpoint"):
        make_agent(f"ego_mlp:{bogus}")


def test_train_ego_mlp_command(torch, tmp_path):
    from typer.testing import CliRunner

    from irlvla_bench.cli import app

    out = tmp_path / "ckpt.pt"
    result = CliRunner().invoke(app, ["train", "ego-mlp", "--data", str(agent_world()), "--out", str(out),
                                      "--epochs", "5", "--hidden", "16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "ego_mlp:" in result.output
    agent = make_agent(f"ego_mlp:{out}")
    assert agent.config.hidden == 16 and agent.meta["split"] == "navtrain"
    bad = CliRunner().invoke(app, ["train", "ego-mlp", "--data", str(tmp_path), "--out", str(out)])
    assert bad.exit_code == 2 and "unknown split" in bad.output


def test_agent_modules_import_without_torch():
    code = ("import sys, agents, agents.base, agents.registered, agents.contract, agents.navsim_adapter, "
            "agents.baselines, agents.baselines.constant_velocity, agents.baselines.human, "
            "agents.baselines.pdm_closed, agents.baselines.ego_mlp_data, agents.baselines.ego_mlp_cli; "
            "from agents.base import available_agents; available_agents(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- registry


def test_registry_has_the_baselines():
    assert {"constant_velocity", "human", "pdm_closed", "ego_mlp"} <= set(available_agents())
    assert make_agent("constant_velocity").name == "constant_velocity"


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match="'constant_velocity' is already registered"):
        register_agent("constant_velocity", "agents.baselines.constant_velocity:ConstantVelocityAgent")
    register_agent("test_throwaway", HumanAgent)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_agent("test_throwaway", PDMClosedAgent)
        assert isinstance(make_agent("test_throwaway"), HumanAgent)
    finally:
        AGENTS.unregister("test_throwaway")


def test_registry_suggests_close_names_for_unknown_ones():
    with pytest.raises(UnknownNameError, match="did you mean constant_velocity") as excinfo:
        make_agent("constant_velocty")
    assert "unknown agent 'constant_velocty'" in str(excinfo.value)
    with pytest.raises(UnknownNameError, match="did you mean pdm_closed"):
        make_agent("pdm-closed:/some/checkpoint")
    with pytest.raises(UnknownNameError, match="known: ") as excinfo:
        make_agent("zzzz")
    assert "did you mean" not in str(excinfo.value)
