"""The agent contract checker: every registered agent passes it; agents planted with each defect fail it with
the right message."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agents.base import (AGENTS, NUM_POSES, Agent, AgentInput, CheckpointRequiredError, SensorConfig, Trajectory,
                         available_agents, make_agent)
from agents.contract import AgentContractError, assert_agent_contract, check_agent, synthetic_inputs
from agent_fixtures import ego_mlp_checkpoint
from agent_fixtures import world_inputs as shared_world_inputs

# Agents that cannot be built from their name alone: name -> factory of a checkpoint-backed instance.
CHECKPOINT_FACTORIES = {
    "ego_mlp": lambda: make_agent(f"ego_mlp:{ego_mlp_checkpoint()}"),
    "irlvla_rl": lambda: make_agent("irlvla_rl:" + str(
        __import__("agents.rl.toy", fromlist=["tiny_policy_checkpoint"]).tiny_policy_checkpoint())),
    "irlvla_il": lambda: make_agent("irlvla_il:" + str(__import__("test_vla_fixtures").trained_run() / "model.pt")),
}


@pytest.fixture(scope="module")
def inputs() -> list[AgentInput]:
    return synthetic_inputs(3, seed=0)


def _factory(name: str):
    if name in CHECKPOINT_FACTORIES:
        return CHECKPOINT_FACTORIES[name]
    try:
        make_agent(name)
    except CheckpointRequiredError as exc:
        pytest.fail(f"agent {name!r} needs a checkpoint ({exc}); add a tiny-checkpoint factory for it to "
                    f"CHECKPOINT_FACTORIES in {__file__}")
    return lambda: make_agent(name)


# ------------------------------------------------------------------------------------------ registered agents


@pytest.mark.parametrize("name", available_agents())
def test_registered_agent_passes_the_contract(name, inputs):
    report = assert_agent_contract(_factory(name), inputs, seed=0)
    assert report.passed
    assert report.checks[-1] == "sensor use"


@pytest.fixture(scope="module")
def world_inputs() -> list[AgentInput]:
    return list(shared_world_inputs())


def test_world_inputs_hold_original_and_synthetic_frames(world_inputs):
    assert [len(x.token) for x in world_inputs] == [16, 17]  # NAVSIM: 17-character tokens are synthetic
    for x in world_inputs:
        assert len(x.ego_statuses) == 4 and np.allclose(x.current.pose, 0.0)
        assert all(len(cams) == 8 for cams in x.cameras) and all(p is not None and p.shape[0] == 6 for p in x.lidars)
        assert x.privileged is not None and x.privileged.token == x.token
    assert world_inputs[0].privileged.human_future is not None and world_inputs[1].privileged.human_future is None


@pytest.mark.parametrize("name", ["constant_velocity", "human", "pdm_closed", "ego_mlp"])
def test_baselines_pass_on_generated_world_frames(name, world_inputs):
    assert_agent_contract(_factory(name), world_inputs)


# ------------------------------------------------------------------------------------------ planted defects


def _straight(speed: float = 5.0) -> np.ndarray:
    poses = np.zeros((NUM_POSES, 3))
    poses[:, 0] = speed * 0.5 * np.arange(1, NUM_POSES + 1)
    return poses


class _Base(Agent):
    def sensor_config(self) -> SensorConfig:
        return SensorConfig(history_frames=1)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return Trajectory(_straight(float(np.hypot(*agent_input.current.velocity))))


class WrongCount(_Base):
    name = "wrong_count"

    def compute_trajectory(self, agent_input):
        return Trajectory(_straight()[:7])


class WrongCountBypassingValidation(_Base):
    name = "wrong_count_bypass"

    def compute_trajectory(self, agent_input):
        traj = object.__new__(Trajectory)
        object.__setattr__(traj, "poses", np.zeros((NUM_POSES, 2)))
        object.__setattr__(traj, "interval_s", 0.5)
        return traj


class ReturnsNaN(_Base):
    name = "returns_nan"

    def compute_trajectory(self, agent_input):
        poses = _straight()
        poses[3, 1] = np.nan
        return Trajectory(poses)


class ReturnsArray(_Base):
    name = "returns_array"

    def compute_trajectory(self, agent_input):
        return _straight()


class RandomWithoutSeed(_Base):
    name = "random_without_seed"

    def compute_trajectory(self, agent_input):
        return Trajectory(_straight() + np.random.default_rng().normal(0.0, 0.1, (NUM_POSES, 3)))


class SeededNoise(_Base):
    """Stochastic but honest: ``seed`` resets the generator (must pass)."""

    name = "seeded_noise"

    def __init__(self):
        self._rng = np.random.default_rng(0)

    def seed(self, seed):
        self._rng = np.random.default_rng(seed)

    def compute_trajectory(self, agent_input):
        return Trajectory(_straight() + self._rng.normal(0.0, 0.1, (NUM_POSES, 3)))


class SeedIgnored(SeededNoise):
    name = "seed_ignored"

    def seed(self, seed):
        pass  # the generator keeps advancing: a re-seeded second run differs


class IgnoresCameras(_Base):
    name = "ignores_cameras"

    def sensor_config(self):
        return SensorConfig(history_frames=1, cameras=("CAM_F0", "CAM_L0"))


def _image_mean(agent_input: AgentInput, camera: str, frame: int = -1) -> float:
    return float(agent_input.cameras[frame][camera].image.mean())


class UsesFrontIgnoresBack(_Base):
    name = "uses_front_ignores_back"

    def sensor_config(self):
        return SensorConfig(history_frames=1, cameras=("CAM_F0", "CAM_B0"))

    def compute_trajectory(self, agent_input):
        return Trajectory(_straight(1.0 + _image_mean(agent_input, "CAM_F0") / 100.0))


class UsesCameras(_Base):
    name = "uses_cameras"

    def sensor_config(self):
        return SensorConfig(history_frames=1, cameras=("CAM_F0", "CAM_B0"))

    def compute_trajectory(self, agent_input):
        speed = 1.0 + (_image_mean(agent_input, "CAM_F0") + _image_mean(agent_input, "CAM_B0")) / 100.0
        return Trajectory(_straight(speed))


class IgnoresLidar(_Base):
    name = "ignores_lidar"

    def sensor_config(self):
        return SensorConfig(history_frames=1, lidar=True)


class UsesLidar(_Base):
    name = "uses_lidar"

    def sensor_config(self):
        return SensorConfig(history_frames=1, lidar=True)

    def compute_trajectory(self, agent_input):
        points = agent_input.lidars[-1]
        return Trajectory(_straight(5.0 + float(np.mean(points[0])) / 10.0))


class IgnoresHistory(_Base):
    """Asks for 4 ego statuses, reads only the current one."""

    name = "ignores_history"

    def sensor_config(self):
        return SensorConfig(history_frames=4)


class UsesHistory(_Base):
    name = "uses_history"

    def sensor_config(self):
        return SensorConfig(history_frames=4)

    def compute_trajectory(self, agent_input):
        first = agent_input.ego_statuses[0]
        return Trajectory(_straight(float(np.hypot(*agent_input.current.velocity)) + 0.1 * abs(first.pose[0])))


class IgnoresOlderSensorFrame(_Base):
    name = "ignores_older_sensor_frame"

    def sensor_config(self):
        return SensorConfig(history_frames=4, cameras=("CAM_F0",), sensor_frames=(0, 3))

    def compute_trajectory(self, agent_input):
        first = agent_input.ego_statuses[0]
        return Trajectory(_straight(1.0 + _image_mean(agent_input, "CAM_F0", 3) / 100.0 + 0.1 * abs(first.pose[0])))


class BatchDisagrees(_Base):
    name = "batch_disagrees"

    def compute_trajectories(self, agent_inputs):
        return [self.compute_trajectory(x) for x in reversed(agent_inputs)]


class BatchTooShort(_Base):
    name = "batch_too_short"

    def compute_trajectories(self, agent_inputs):
        return [self.compute_trajectory(x) for x in agent_inputs[1:]]


def _report(cls, inputs):
    return check_agent(cls, inputs, seed=0)


@pytest.mark.parametrize("cls, kind, text", [
    (WrongCount, "shape", "wrong pose count"),
    (WrongCountBypassingValidation, "shape", "poses of shape (8, 2)"),
    (ReturnsNaN, "non_finite", "NaN or inf"),
    (ReturnsArray, "type", "returned ndarray, expected Trajectory"),
    (BatchDisagrees, "batch", "batched compute_trajectories disagrees"),
    (BatchTooShort, "batch", "compute_trajectories returned list of length 2 for 3 inputs"),
])
def test_invalid_outputs_are_caught(cls, kind, text, inputs):
    report = _report(cls, inputs)
    assert not report.passed
    assert [p.kind for p in report.problems] == [kind]
    assert text in report.messages[0]


def test_random_without_seed_is_caught_both_ways(inputs):
    report = _report(RandomWithoutSeed, inputs)
    assert report.kinds() == {"nondeterministic"}
    assert any("re-seeding with seed=0" in m for m in report.messages)
    assert any("a fresh instance seeded with seed=0" in m for m in report.messages)
    assert "sensor use skipped" in report.checks[-1]  # moves with or without sensors


def test_seed_that_does_not_reset_the_generator_is_caught(inputs):
    report = _report(SeedIgnored, inputs)
    assert report.kinds() == {"nondeterministic"}
    assert "re-seeding" in report.messages[0]


def test_stochastic_agent_that_honours_its_seed_passes(inputs):
    assert _report(SeededNoise, inputs).passed


def test_requested_but_unused_cameras_are_named(inputs):
    report = _report(IgnoresCameras, inputs)
    assert report.messages == [
        "requests camera CAM_F0 but does not use it (output unchanged when every CAM_F0 image is replaced)",
        "requests camera CAM_L0 but does not use it (output unchanged when every CAM_L0 image is replaced)",
    ]
    only_back = _report(UsesFrontIgnoresBack, inputs)
    assert [m.split(" (")[0] for m in only_back.messages] == ["requests camera CAM_B0 but does not use it"]
    assert _report(UsesCameras, inputs).passed


def test_requested_but_unused_lidar_is_caught(inputs):
    report = _report(IgnoresLidar, inputs)
    assert [p.kind for p in report.problems] == ["unused_sensor"]
    assert report.messages[0].startswith("requests LiDAR but does not use it")
    assert _report(UsesLidar, inputs).passed


def test_requested_but_unused_history_is_caught(inputs):
    report = _report(IgnoresHistory, inputs)
    assert [p.kind for p in report.problems] == ["unused_sensor"]
    assert report.messages[0].startswith("requests 4 history frames but uses only the current one")
    assert _report(UsesHistory, inputs).passed


def test_requested_but_unused_sensor_frame_is_caught(inputs):
    report = _report(IgnoresOlderSensorFrame, inputs)
    assert [m.split(" (")[0] for m in report.messages] == ["requests sensors at history frame 0 but does not use them"]


def test_assert_agent_contract_raises_with_the_report(inputs):
    with pytest.raises(AgentContractError, match="requests LiDAR but does not use it") as excinfo:
        assert_agent_contract(IgnoresLidar, inputs)
    assert excinfo.value.report.agent == "ignores_lidar"
    assert "FAILED" in str(excinfo.value)


def test_checker_usage_errors(inputs):
    with pytest.raises(ValueError, match="at least one input"):
        check_agent(_Base, [])
    no_case = [replace(x, privileged=None) for x in inputs]
    with pytest.raises(ValueError, match="privileged agent needs the scoring case"):
        check_agent(lambda: make_agent("pdm_closed"), no_case)
    current_only = [replace(x, ego_statuses=x.ego_statuses[-1:], cameras=x.cameras[-1:], lidars=x.lidars[-1:])
                    for x in inputs]
    with pytest.raises(ValueError, match="requests 4 history frames, the input has 1"):
        check_agent(UsesHistory, current_only)
    report = check_agent(lambda: object(), inputs)
    assert report.kinds() == {"type"} and "not an agents.base.Agent" in report.messages[0]


def test_sensor_agents_never_see_the_case(inputs):
    seen = []

    class Spy(_Base):
        name = "spy"

        def compute_trajectory(self, agent_input):
            seen.append(agent_input.privileged)
            return super().compute_trajectory(agent_input)

    assert _report(Spy, inputs).passed
    assert seen and all(case is None for case in seen)


def test_planted_agents_can_be_registered_and_checked(inputs):
    """The registry path the evaluation runner uses: register, build by name, check, unregister."""
    AGENTS.register("planted_ignores_lidar", IgnoresLidar)
    try:
        report = check_agent(lambda: make_agent("planted_ignores_lidar"), inputs)
    finally:
        AGENTS.unregister("planted_ignores_lidar")
    assert report.kinds() == {"unused_sensor"}
