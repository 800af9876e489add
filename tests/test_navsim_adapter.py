"""The NAVSIM adapter. navsim cannot be installed here, so the conversion code runs against small stand-ins for
``navsim.agents.abstract_agent``, ``navsim.common.dataclasses`` and nuplan's ``TrajectorySampling`` (same class
and field names, same semantics for what the adapter touches) injected into ``sys.modules``; without them the
module must still import and say what is missing."""

from __future__ import annotations

import abc
import sys
import types
from dataclasses import asdict, dataclass
from typing import Any, List, Optional, Union

import numpy as np
import pytest

from agents.base import AgentInput, SensorConfig, Trajectory, make_agent
from agents.contract import check_agent, synthetic_inputs
import agents.navsim_adapter as adapter

# ---------------------------------------------------------------------------------------------- stand-ins


@dataclass
class TrajectorySampling:
    num_poses: Optional[int] = None
    time_horizon: Optional[float] = None
    interval_length: Optional[float] = None

    def __post_init__(self):  # nuplan: any two of the three determine the third
        if self.num_poses is None:
            self.num_poses = int(round(self.time_horizon / self.interval_length))
        elif self.interval_length is None:
            self.interval_length = self.time_horizon / self.num_poses
        elif self.time_horizon is None:
            self.time_horizon = self.num_poses * self.interval_length


@dataclass
class Camera:
    image: Optional[np.ndarray] = None
    sensor2lidar_rotation: Optional[np.ndarray] = None
    sensor2lidar_translation: Optional[np.ndarray] = None
    intrinsics: Optional[np.ndarray] = None
    distortion: Optional[np.ndarray] = None
    camera_path: Any = None


@dataclass
class Cameras:
    cam_f0: Camera
    cam_l0: Camera
    cam_l1: Camera
    cam_l2: Camera
    cam_r0: Camera
    cam_r1: Camera
    cam_r2: Camera
    cam_b0: Camera


@dataclass
class Lidar:
    lidar_pc: Optional[np.ndarray] = None
    lidar_path: Any = None


@dataclass
class EgoStatus:
    ego_pose: np.ndarray
    ego_velocity: np.ndarray
    ego_acceleration: np.ndarray
    driving_command: np.ndarray
    in_global_frame: bool = False


@dataclass
class NavsimAgentInput:
    ego_statuses: List[EgoStatus]
    cameras: List[Cameras]
    lidars: List[Lidar]


@dataclass
class NavsimTrajectory:
    poses: np.ndarray
    trajectory_sampling: TrajectorySampling = None

    def __post_init__(self):
        if self.trajectory_sampling is None:
            self.trajectory_sampling = TrajectorySampling(time_horizon=4, interval_length=0.5)
        assert self.poses.ndim == 2 and self.poses.shape[1] == 3
        assert self.poses.shape[0] == self.trajectory_sampling.num_poses


@dataclass
class NavsimSensorConfig:
    cam_f0: Union[bool, List[int]]
    cam_l0: Union[bool, List[int]]
    cam_l1: Union[bool, List[int]]
    cam_l2: Union[bool, List[int]]
    cam_r0: Union[bool, List[int]]
    cam_r1: Union[bool, List[int]]
    cam_r2: Union[bool, List[int]]
    cam_b0: Union[bool, List[int]]
    lidar_pc: Union[bool, List[int]]

    def get_sensors_at_iteration(self, iteration: int) -> List[str]:
        out = []
        for name, include in asdict(self).items():
            if (isinstance(include, bool) and include) or (isinstance(include, list) and iteration in include):
                out.append(name)
        return out

    @classmethod
    def build_all_sensors(cls, include=True):
        return cls(*([include] * 9))

    @classmethod
    def build_no_sensors(cls):
        return cls.build_all_sensors(False)


class AbstractAgent(abc.ABC):
    def __init__(self, trajectory_sampling: TrajectorySampling, requires_scene: bool = False):
        self.requires_scene = requires_scene
        self._trajectory_sampling = trajectory_sampling

    @abc.abstractmethod
    def name(self) -> str: ...

    @abc.abstractmethod
    def get_sensor_config(self): ...

    @abc.abstractmethod
    def initialize(self) -> None: ...

    def compute_trajectory(self, agent_input):
        raise NotImplementedError


# navsim agents, written against the stand-in API the way NAVSIM's own are


class FakeConstantVelocity(AbstractAgent):
    def __init__(self):
        super().__init__(TrajectorySampling(time_horizon=4, interval_length=0.5))

    def name(self):
        return "FakeConstantVelocity"

    def initialize(self):
        pass

    def get_sensor_config(self):
        return NavsimSensorConfig.build_no_sensors()

    def compute_trajectory(self, agent_input):
        speed = (agent_input.ego_statuses[-1].ego_velocity ** 2).sum(-1) ** 0.5
        n, dt = self._trajectory_sampling.num_poses, self._trajectory_sampling.interval_length
        poses = np.array([[(i + 1) * dt * speed, 0.0, 0.0] for i in range(n)], dtype=np.float32)
        return NavsimTrajectory(poses, self._trajectory_sampling)


class FakeFrontCamera(FakeConstantVelocity):
    """Front camera of the current frame, LiDAR of the two latest frames, the oldest ego status."""

    seen: list = []

    def name(self):
        return "FakeFrontCamera"

    def get_sensor_config(self):
        config = NavsimSensorConfig.build_no_sensors()
        config.cam_f0 = [3]
        config.lidar_pc = [2, 3]
        return config

    def compute_trajectory(self, agent_input):
        FakeFrontCamera.seen.append(agent_input)
        cams, lidars = agent_input.cameras, agent_input.lidars
        speed = (1.0 + cams[3].cam_f0.image.mean() / 100.0 + lidars[2].lidar_pc[0].mean() / 50.0
                 + lidars[3].lidar_pc[0].mean() / 50.0 + 0.1 * abs(agent_input.ego_statuses[0].ego_pose[0]))
        poses = np.zeros((8, 3), dtype=np.float32)
        poses[:, 0] = np.arange(1, 9) * 0.5 * speed
        return NavsimTrajectory(poses, self._trajectory_sampling)


class FakeHuman(FakeConstantVelocity):
    requires_scene = True

    def __init__(self):  # like NAVSIM's HumanAgent: no super().__init__, so the class attribute stands
        self._trajectory_sampling = TrajectorySampling(time_horizon=4, interval_length=0.5)

    def name(self):
        return "FakeHuman"


class FakeTenHertz(FakeConstantVelocity):
    def __init__(self):
        AbstractAgent.__init__(self, TrajectorySampling(time_horizon=4, interval_length=0.1))


@pytest.fixture
def fake_navsim(monkeypatch):
    """Install the stand-ins as navsim / nuplan modules for one test."""
    modules = {
        "navsim": types.ModuleType("navsim"),
        "navsim.agents": types.ModuleType("navsim.agents"),
        "navsim.agents.abstract_agent": types.ModuleType("navsim.agents.abstract_agent"),
        "navsim.common": types.ModuleType("navsim.common"),
        "navsim.common.dataclasses": types.ModuleType("navsim.common.dataclasses"),
        "nuplan": types.ModuleType("nuplan"),
        "nuplan.planning": types.ModuleType("nuplan.planning"),
        "nuplan.planning.simulation": types.ModuleType("nuplan.planning.simulation"),
        "nuplan.planning.simulation.trajectory": types.ModuleType("nuplan.planning.simulation.trajectory"),
        "nuplan.planning.simulation.trajectory.trajectory_sampling":
            types.ModuleType("nuplan.planning.simulation.trajectory.trajectory_sampling"),
        "fake_navsim_agents": types.ModuleType("fake_navsim_agents"),
    }
    modules["navsim.agents.abstract_agent"].AbstractAgent = AbstractAgent
    d = modules["navsim.common.dataclasses"]
    d.AgentInput, d.EgoStatus, d.Camera, d.Cameras, d.Lidar = NavsimAgentInput, EgoStatus, Camera, Cameras, Lidar
    d.Trajectory, d.SensorConfig = NavsimTrajectory, NavsimSensorConfig
    modules["nuplan.planning.simulation.trajectory.trajectory_sampling"].TrajectorySampling = TrajectorySampling
    modules["fake_navsim_agents"].FakeConstantVelocity = FakeConstantVelocity
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    assert adapter.navsim_available()
    return modules


@pytest.fixture(scope="module")
def inputs() -> list[AgentInput]:
    return synthetic_inputs(3, seed=3)


# ---------------------------------------------------------------------------------------------- without navsim


def test_without_navsim_the_module_imports_and_names_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "navsim", None)  # None in sys.modules makes `import navsim` fail
    assert not adapter.navsim_available()
    expected = "navsim is not installed; the adapter needs navsim.agents.abstract_agent"
    with pytest.raises(adapter.NavsimNotInstalled, match=expected):
        adapter.navsim_api()
    with pytest.raises(adapter.NavsimNotInstalled, match=expected) as excinfo:
        adapter.to_navsim_agent("constant_velocity")
    assert "navsim.common.dataclasses" in str(excinfo.value) and "TrajectorySampling" in str(excinfo.value)
    with pytest.raises(ImportError, match=expected):  # NavsimNotInstalled is an ImportError
        adapter.NavsimAgent(FakeConstantVelocity())


def test_adapter_module_imports_in_a_clean_interpreter():
    import subprocess

    code = ("import sys, agents.navsim_adapter as a; assert 'navsim' not in sys.modules; "
            "assert 'torch' not in sys.modules; print(a.navsim_available())")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() in ("True", "False")


# ---------------------------------------------------------------------------------------------- sensor configs


def test_sensor_config_maps_both_ways(fake_navsim):
    ours = SensorConfig(history_frames=2, cameras=("CAM_F0", "CAM_B0"), lidar=True, sensor_frames=(0, 1))
    navsim = adapter.to_navsim_sensor_config(ours)
    assert navsim.cam_f0 == [2, 3] and navsim.cam_b0 == [2, 3] and navsim.lidar_pc == [2, 3]
    assert navsim.cam_l0 is False and navsim.cam_r2 is False
    back = adapter.from_navsim_sensor_config(navsim)
    assert back == SensorConfig(history_frames=4, cameras=("CAM_F0", "CAM_B0"), lidar=True, sensor_frames=(2, 3))

    current = adapter.to_navsim_sensor_config(SensorConfig(history_frames=1, cameras=("CAM_L1",)))
    assert current.cam_l1 == [3] and current.lidar_pc is False
    assert adapter.from_navsim_sensor_config(current) == SensorConfig(history_frames=4, cameras=("CAM_L1",))

    everything = adapter.from_navsim_sensor_config(NavsimSensorConfig.build_all_sensors(True))
    assert everything.cameras == ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")
    assert everything.lidar and everything.sensor_frames == (0, 1, 2, 3)
    assert adapter.from_navsim_sensor_config(NavsimSensorConfig.build_no_sensors()) == SensorConfig(history_frames=4)

    with pytest.raises(ValueError, match="needs 5 history frames, NAVSIM gives 4"):
        adapter.to_navsim_sensor_config(SensorConfig(history_frames=5))
    bad = NavsimSensorConfig.build_no_sensors()
    bad.cam_f0 = [4]
    with pytest.raises(ValueError, match=r"cam_f0 asks for frames \[4\]"):
        adapter.from_navsim_sensor_config(bad)


# ---------------------------------------------------------------------------------------------- agent inputs


def test_agent_input_round_trip(fake_navsim, inputs):
    ours = inputs[0]
    navsim = adapter.to_navsim_agent_input(ours)
    assert isinstance(navsim, NavsimAgentInput) and len(navsim.ego_statuses) == 4
    status = navsim.ego_statuses[-1]
    assert status.ego_pose.dtype == np.float32 and status.in_global_frame is False
    assert status.driving_command.dtype == np.int64 and status.driving_command.sum() == 1
    assert navsim.cameras[0].cam_f0.intrinsics is ours.cameras[0]["CAM_F0"].intrinsic
    back = adapter.from_navsim_agent_input(navsim, token=ours.token)
    assert back.token == ours.token and len(back.ego_statuses) == 4
    for a, b in zip(ours.ego_statuses, back.ego_statuses):
        np.testing.assert_allclose(a.pose, b.pose, rtol=1e-6, atol=1e-6)  # float32 on the way
        np.testing.assert_allclose(a.velocity, b.velocity, rtol=1e-6)
        np.testing.assert_array_equal(a.driving_command, b.driving_command)
    for a, b in zip(ours.cameras, back.cameras):
        assert set(a) == set(b)
        for name in a:
            np.testing.assert_array_equal(a[name].image, b[name].image)
            np.testing.assert_array_equal(a[name].sensor2lidar_rotation, b[name].sensor2lidar_rotation)
    for a, b in zip(ours.lidars, back.lidars):
        np.testing.assert_array_equal(a, b)
    last_two = adapter.from_navsim_agent_input(navsim, history_frames=2)
    assert len(last_two.ego_statuses) == len(last_two.cameras) == len(last_two.lidars) == 2


def test_navsim_input_carries_only_the_requested_sensors(fake_navsim, inputs):
    config = FakeFrontCamera().get_sensor_config()
    navsim = adapter.to_navsim_agent_input(inputs[0], config)
    assert [c.cam_f0.image is not None for c in navsim.cameras] == [False, False, False, True]
    assert all(c.cam_b0.image is None and c.cam_b0 == Camera() for c in navsim.cameras)
    assert [lidar.lidar_pc is not None for lidar in navsim.lidars] == [False, False, True, True]
    back = adapter.from_navsim_agent_input(navsim)
    assert [sorted(c) for c in back.cameras] == [[], [], [], ["CAM_F0"]]
    assert back.lidars[0] is None and back.lidars[3] is not None


# ---------------------------------------------------------------------------------------------- ours -> navsim


def test_our_agent_runs_as_a_navsim_agent(fake_navsim, inputs):
    wrapped = adapter.to_navsim_agent("constant_velocity")
    assert isinstance(wrapped, AbstractAgent) and wrapped.requires_scene is False
    assert wrapped.name() == "constant_velocity"
    assert wrapped.get_sensor_config() == NavsimSensorConfig.build_no_sensors()
    assert wrapped._trajectory_sampling.num_poses == 8 and wrapped._trajectory_sampling.interval_length == 0.5
    wrapped.initialize()
    ours = make_agent("constant_velocity")
    for x in inputs:
        trajectory = wrapped.compute_trajectory(adapter.to_navsim_agent_input(x))
        assert isinstance(trajectory, NavsimTrajectory) and trajectory.poses.dtype == np.float32
        np.testing.assert_allclose(trajectory.poses, ours.compute_trajectory(x).poses, rtol=1e-6)
    with pytest.raises(ValueError, match="navsim gave 1 ego statuses"):
        wrapped.compute_trajectory(adapter.to_navsim_agent_input(adapter.from_navsim_agent_input(
            adapter.to_navsim_agent_input(inputs[0]), history_frames=1)))


def test_our_sensor_agent_gets_its_sensors_through_navsim(fake_navsim, inputs):
    from agents.base import Agent

    class FrontCam(Agent):
        name = "front_cam"

        def sensor_config(self):
            return SensorConfig(history_frames=2, cameras=("CAM_F0",), sensor_frames=(1,))

        def compute_trajectory(self, agent_input):
            assert len(agent_input.ego_statuses) == 2 and agent_input.cameras[0] == {}
            poses = np.zeros((8, 3))
            poses[:, 0] = np.arange(1, 9) * agent_input.cameras[1]["CAM_F0"].image.mean() / 50.0
            return Trajectory(poses)

    wrapped = adapter.to_navsim_agent(FrontCam())
    config = wrapped.get_sensor_config()
    assert config.cam_f0 == [3] and config.lidar_pc is False
    for x in inputs:
        got = wrapped.compute_trajectory(adapter.to_navsim_agent_input(x, config)).poses
        np.testing.assert_allclose(got[:, 0], np.arange(1, 9) * x.cameras[3]["CAM_F0"].image.mean() / 50.0,
                                   rtol=1e-6)


def test_privileged_agents_cannot_become_navsim_agents(fake_navsim):
    for name in ("human", "pdm_closed"):
        with pytest.raises(ValueError, match="privileged"):
            adapter.to_navsim_agent(name)


# ---------------------------------------------------------------------------------------------- navsim -> ours


def test_navsim_agent_runs_as_ours(fake_navsim, inputs):
    agent = adapter.NavsimAgent(FakeConstantVelocity())
    assert agent.name == "FakeConstantVelocity" and agent.sensor_config() == SensorConfig(history_frames=4)
    ours = make_agent("constant_velocity")
    for x in inputs:
        trajectory = agent.compute_trajectory(x)
        assert isinstance(trajectory, Trajectory)
        np.testing.assert_allclose(trajectory.poses, ours.compute_trajectory(x).poses, rtol=1e-6)
    # NAVSIM always hands its agents the full history window; the checker reports an agent that ignores it.
    report = check_agent(lambda: adapter.NavsimAgent(FakeConstantVelocity()), inputs)
    assert [p.kind for p in report.problems] == ["unused_sensor"]
    assert report.messages[0].startswith("requests 4 history frames but uses only the current one")


def test_navsim_sensor_agent_passes_the_contract_through_the_adapter(fake_navsim, inputs):
    agent = adapter.NavsimAgent(FakeFrontCamera())
    assert agent.sensor_config() == SensorConfig(history_frames=4, cameras=("CAM_F0",), lidar=True,
                                                 sensor_frames=(2, 3))
    FakeFrontCamera.seen.clear()
    report = check_agent(lambda: adapter.NavsimAgent(FakeFrontCamera()), inputs)
    assert report.passed, str(report)
    # It saw exactly what it asked for: no camera at frame 2 although our config's frame list covers it.
    seen = FakeFrontCamera.seen[0]
    assert seen.cameras[2].cam_f0.image is None and seen.cameras[3].cam_f0.image is not None
    assert seen.lidars[1].lidar_pc is None and seen.lidars[2].lidar_pc is not None


def test_round_trip_ours_navsim_ours(fake_navsim, inputs):
    twice = adapter.NavsimAgent(adapter.to_navsim_agent("constant_velocity"))
    assert twice.name == "constant_velocity"
    ours = make_agent("constant_velocity")
    for x in inputs:
        np.testing.assert_allclose(twice.compute_trajectory(x).poses, ours.compute_trajectory(x).poses, rtol=1e-6)


def test_navsim_agents_that_cannot_be_wrapped(fake_navsim):
    with pytest.raises(ValueError, match="requires the navsim Scene"):
        adapter.NavsimAgent(FakeHuman())
    with pytest.raises(ValueError, match="samples 40 poses every 0.1 s"):
        adapter.NavsimAgent(FakeTenHertz())
    with pytest.raises(ValueError, match="needs 8 every 0.5 s"):
        adapter.from_navsim_trajectory(NavsimTrajectory(np.zeros((4, 3), np.float32),
                                                        TrajectorySampling(num_poses=4, interval_length=0.5)))


def test_navsim_agent_from_target(fake_navsim, inputs):
    agent = adapter.NavsimAgent.from_target("fake_navsim_agents:FakeConstantVelocity")
    assert agent.name == "FakeConstantVelocity"
    assert agent.compute_trajectory(inputs[0]).poses.shape == (8, 3)
    with pytest.raises(ValueError, match="package.module:Class"):
        adapter.NavsimAgent.from_target("fake_navsim_agents.FakeConstantVelocity")
