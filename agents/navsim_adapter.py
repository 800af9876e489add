"""NAVSIM adapter, both ways: any agent of ours as a navsim ``AbstractAgent``, a navsim agent as ours.

navsim (and nuplan-devkit, which it imports) is imported lazily, only when an adapter is built; without it this
module still imports and building an adapter raises ``NavsimNotInstalled`` saying what is missing.

Field mapping (``navsim.common.dataclasses``):
* ``EgoStatus(ego_pose, ego_velocity, ego_acceleration, driving_command, in_global_frame=False)`` <->
  ``agents.base.EgoStatus(pose, velocity, acceleration, driving_command)``; NAVSIM stores float32, we float64.
* ``Cameras(cam_f0=Camera(image, sensor2lidar_rotation, sensor2lidar_translation, intrinsics, distortion), ...)``
  (an absent camera is ``Camera()`` with ``image=None``) <-> ``{"CAM_F0": CameraImage(...)}`` holding only the
  cameras that are there.
* ``Lidar(lidar_pc (6, N))`` (absent: ``lidar_pc=None``) <-> the (6, N) array or ``None``.
* ``Trajectory(poses float32 (8, 3), TrajectorySampling(time_horizon=4, interval_length=0.5))`` <->
  ``agents.base.Trajectory``.
* ``SensorConfig(cam_f0=..., ..., lidar_pc=...)``, each False / True (every history frame) / [frame indices]
  <-> ``agents.base.SensorConfig(history_frames, cameras, lidar, sensor_frames)``. NAVSIM always hands an agent
  the scene filter's ``num_history_frames`` ego statuses (4 in every NAVSIM split), so NAVSIM frame indices are
  counted in that window and ours in the agent's own (the last ``history_frames`` of it); the adapters take that
  window size as ``navsim_history_frames``.

Privileged agents of ours read the scoring case, which NAVSIM's ``AgentInput`` does not carry, and navsim agents
with ``requires_scene`` read a navsim ``Scene``, which our inputs do not carry: neither can be wrapped.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from agents.base import (NUM_POSES, POSE_INTERVAL_S, Agent, AgentInput, CameraImage, EgoStatus, SensorConfig,
                         Trajectory, make_agent)

NAVSIM_HISTORY_FRAMES = 4  # num_history_frames of NAVSIM's scene filters (navtrain, navtest, navhard_two_stage)
NAVSIM_MODULES = {
    "abstract_agent": "navsim.agents.abstract_agent",
    "dataclasses": "navsim.common.dataclasses",
    "trajectory_sampling": "nuplan.planning.simulation.trajectory.trajectory_sampling",
}
NAVSIM_HINT = ("navsim is not installed; the adapter needs navsim.agents.abstract_agent (AbstractAgent), "
               "navsim.common.dataclasses (AgentInput, EgoStatus, Camera, Cameras, Lidar, Trajectory, SensorConfig) "
               "and nuplan.planning.simulation.trajectory.trajectory_sampling (TrajectorySampling, from "
               "nuplan-devkit). navsim is not on PyPI: install NAVSIM v2 and nuplan-devkit from their repositories "
               "(github.com/autonomousvision/navsim, see its install guide) into this environment")


class NavsimNotInstalled(ImportError):
    pass


@dataclass(frozen=True)
class _Navsim:
    AbstractAgent: type
    AgentInput: type
    EgoStatus: type
    Camera: type
    Cameras: type
    Lidar: type
    Trajectory: type
    SensorConfig: type
    TrajectorySampling: type


def navsim_api() -> _Navsim:
    """The navsim classes the adapters use, or ``NavsimNotInstalled`` naming what is missing."""
    modules: dict[str, ModuleType] = {}
    for key, name in NAVSIM_MODULES.items():
        try:
            modules[key] = importlib.import_module(name)
        except ImportError as exc:
            raise NavsimNotInstalled(f"{NAVSIM_HINT} (importing {name}: {exc})") from exc
    d = modules["dataclasses"]
    names = ("AgentInput", "EgoStatus", "Camera", "Cameras", "Lidar", "Trajectory", "SensorConfig")
    missing = [n for n in names if not hasattr(d, n)]
    if missing or not hasattr(modules["abstract_agent"], "AbstractAgent"):
        raise NavsimNotInstalled(f"the installed navsim lacks {missing or ['AbstractAgent']}; the adapter follows "
                                 f"NAVSIM v2's navsim.common.dataclasses")
    return _Navsim(modules["abstract_agent"].AbstractAgent, *(getattr(d, n) for n in names),
                   modules["trajectory_sampling"].TrajectorySampling)


def navsim_available() -> bool:
    try:
        navsim_api()
    except NavsimNotInstalled:
        return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# Sensor configs


def _navsim_field(camera: str) -> str:
    return camera.lower()  # CAM_F0 -> cam_f0


def to_navsim_sensor_config(sensors: SensorConfig, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES) -> Any:
    """Our request as NAVSIM's per-sensor request within its ``navsim_history_frames`` window."""
    api = navsim_api()
    offset = _offset(sensors, navsim_history_frames)
    frames = [offset + f for f in sensors.frames_with_sensors]
    values = {_navsim_field(c): (list(frames) if c in sensors.cameras else False)
              for c in ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")}
    values["lidar_pc"] = list(frames) if sensors.lidar else False
    return api.SensorConfig(**values)


def from_navsim_sensor_config(config: Any, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES) -> SensorConfig:
    """NAVSIM's request as ours. Ours has one frame list for all sensors, so it is the union of NAVSIM's; the
    navsim agent still gets exactly what it asked for per sensor (``to_navsim_agent_input`` drops the rest)."""
    cameras, frames, lidar = [], set(), False
    for name in ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0", "lidar_pc"):
        wanted = _frames_of(getattr(config, _navsim_field(name)), navsim_history_frames, name)
        if wanted:
            frames |= set(wanted)
            if name == "lidar_pc":
                lidar = True
            else:
                cameras.append(name)
    current = navsim_history_frames - 1
    sensor_frames = None if frames <= {current} else tuple(sorted(frames))
    return SensorConfig(history_frames=navsim_history_frames, cameras=tuple(cameras), lidar=lidar,
                        sensor_frames=sensor_frames)


def _frames_of(value: Any, n: int, name: str) -> list[int]:
    """The frames a NAVSIM sensor entry asks for (bool: all or none; list: those)."""
    if isinstance(value, bool):
        return list(range(n)) if value else []
    frames = [int(f) for f in value]
    bad = [f for f in frames if not 0 <= f < n]
    if bad:
        raise ValueError(f"navsim SensorConfig.{_navsim_field(name)} asks for frames {bad} outside the {n} "
                         f"history frames")
    return frames


def _offset(sensors: SensorConfig, navsim_history_frames: int) -> int:
    if sensors.history_frames > navsim_history_frames:
        raise ValueError(f"the agent needs {sensors.history_frames} history frames, NAVSIM gives "
                         f"{navsim_history_frames} (the scene filter's num_history_frames)")
    return navsim_history_frames - sensors.history_frames


# ----------------------------------------------------------------------------------------------------------------
# Agent inputs and trajectories


def from_navsim_agent_input(navsim_input: Any, *, token: str = "", history_frames: int | None = None) -> AgentInput:
    """A navsim ``AgentInput`` as ours (the last ``history_frames`` frames; all by default)."""
    statuses = list(navsim_input.ego_statuses)
    n = len(statuses) if history_frames is None else history_frames
    if n > len(statuses):
        raise ValueError(f"need {n} history frames, the navsim AgentInput has {len(statuses)}")
    start = len(statuses) - n
    ego = tuple(EgoStatus(pose=np.asarray(s.ego_pose, dtype=np.float64),
                          velocity=np.asarray(s.ego_velocity, dtype=np.float64),
                          acceleration=np.asarray(s.ego_acceleration, dtype=np.float64),
                          driving_command=np.asarray(s.driving_command, dtype=np.float64))
                for s in statuses[start:])
    cameras = []
    for frame in list(navsim_input.cameras)[start:]:
        cams = {}
        for name in ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0"):
            cam = getattr(frame, _navsim_field(name))
            if cam is not None and cam.image is not None:
                cams[name] = CameraImage(name=name, image=np.asarray(cam.image),
                                         intrinsic=np.asarray(cam.intrinsics, dtype=np.float64),
                                         sensor2lidar_rotation=np.asarray(cam.sensor2lidar_rotation, dtype=np.float64),
                                         sensor2lidar_translation=np.asarray(cam.sensor2lidar_translation,
                                                                             dtype=np.float64),
                                         distortion=np.asarray(cam.distortion if cam.distortion is not None
                                                               else np.zeros(5), dtype=np.float64))
        cameras.append(cams)
    lidars = tuple(None if (lidar is None or lidar.lidar_pc is None) else np.asarray(lidar.lidar_pc)
                   for lidar in list(navsim_input.lidars)[start:])
    return AgentInput(token=token, ego_statuses=ego, cameras=tuple(cameras), lidars=lidars)


def to_navsim_agent_input(agent_input: AgentInput, navsim_sensors: Any = None) -> Any:
    """Our input as a navsim ``AgentInput``; with ``navsim_sensors`` (a navsim ``SensorConfig``) only the
    sensors it asks for at each frame are passed on, as NAVSIM's loader would."""
    api = navsim_api()
    n = len(agent_input.ego_statuses)
    statuses = [api.EgoStatus(ego_pose=np.asarray(s.pose, dtype=np.float32),
                              ego_velocity=np.asarray(s.velocity, dtype=np.float32),
                              ego_acceleration=np.asarray(s.acceleration, dtype=np.float32),
                              driving_command=_command(s.driving_command), in_global_frame=False)
                for s in agent_input.ego_statuses]
    cameras, lidars = [], []
    for i in range(n):
        wanted = None if navsim_sensors is None else set(navsim_sensors.get_sensors_at_iteration(i))
        cams = {}
        for name in ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0"):
            ours = agent_input.cameras[i].get(name)
            field = _navsim_field(name)
            if ours is None or (wanted is not None and field not in wanted):
                cams[field] = api.Camera()
            else:
                cams[field] = api.Camera(image=ours.image, sensor2lidar_rotation=ours.sensor2lidar_rotation,
                                         sensor2lidar_translation=ours.sensor2lidar_translation,
                                         intrinsics=ours.intrinsic, distortion=ours.distortion)
        cameras.append(api.Cameras(**cams))
        pc = agent_input.lidars[i]
        keep = pc is not None and (wanted is None or "lidar_pc" in wanted)
        lidars.append(api.Lidar(lidar_pc=pc) if keep else api.Lidar())
    return api.AgentInput(ego_statuses=statuses, cameras=cameras, lidars=lidars)


def _command(command: np.ndarray) -> np.ndarray:
    """OpenScene stores the one-hot command as integers, and navsim agents see it so (our inputs hold floats)."""
    command = np.asarray(command)
    return command.astype(np.int64) if np.array_equal(command, np.round(command)) else command


def _sampling_ok(sampling: Any) -> bool:
    return int(sampling.num_poses) == NUM_POSES and abs(float(sampling.interval_length) - POSE_INTERVAL_S) < 1e-9


def from_navsim_trajectory(trajectory: Any) -> Trajectory:
    sampling = getattr(trajectory, "trajectory_sampling", None)
    if sampling is not None and not _sampling_ok(sampling):
        raise ValueError(f"navsim trajectory sampled {sampling.num_poses} poses every {sampling.interval_length} s; "
                         f"NAVSIM scoring needs {NUM_POSES} every {POSE_INTERVAL_S} s")
    return Trajectory(np.asarray(trajectory.poses, dtype=np.float64))


# ----------------------------------------------------------------------------------------------------------------
# Ours -> navsim


def to_navsim_agent(agent: Agent | str, *, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES, **kwargs) -> Any:
    """A navsim ``AbstractAgent`` running ``agent`` (an ``Agent`` or a ``NAME[:CHECKPOINT]`` spec).

    Also usable as a hydra target in NAVSIM's configs:
    ``agent: {_target_: agents.navsim_adapter.to_navsim_agent, agent: "ego_mlp:/path/ckpt.pt"}``.
    """
    api = navsim_api()
    ours = make_agent(agent, **kwargs) if isinstance(agent, str) else agent
    if ours.requires_privileged:
        raise ValueError(f"agent {ours.name!r} is privileged (it reads the scoring case, which NAVSIM's AgentInput "
                         f"does not carry) and cannot run as a navsim agent")
    sensors = ours.sensor_config()
    _offset(sensors, navsim_history_frames)  # fail now, not on the first frame
    return _navsim_agent_class(api)(ours, navsim_history_frames)


_CLASSES: dict[int, type] = {}


def _navsim_agent_class(api: _Navsim) -> type:
    """The wrapper class, derived from the imported ``AbstractAgent`` (built once per navsim installation)."""
    key = id(api.AbstractAgent)
    if key in _CLASSES:
        return _CLASSES[key]

    class IrlvlaNavsimAgent(api.AbstractAgent):
        """One of our agents behind NAVSIM's interface (inference only: no feature builders, no training)."""

        requires_scene = False

        def __init__(self, agent: Agent, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES):
            super().__init__(api.TrajectorySampling(time_horizon=NUM_POSES * POSE_INTERVAL_S,
                                                    interval_length=POSE_INTERVAL_S))
            # After super().__init__: the real AbstractAgent is a torch.nn.Module, which needs its own init first.
            self.irlvla_agent = agent
            self.navsim_history_frames = navsim_history_frames
            self._sensors = agent.sensor_config()

        def name(self) -> str:
            return self.irlvla_agent.name

        def initialize(self) -> None:
            self.irlvla_agent.initialize()

        def get_sensor_config(self) -> Any:
            return to_navsim_sensor_config(self._sensors, self.navsim_history_frames)

        def compute_trajectory(self, agent_input: Any) -> Any:
            got = len(agent_input.ego_statuses)
            if got != self.navsim_history_frames:
                raise ValueError(f"navsim gave {got} ego statuses, the adapter was built for navsim_history_frames="
                                 f"{self.navsim_history_frames}")
            ours = from_navsim_agent_input(agent_input, token=str(getattr(agent_input, "token", "")),
                                           history_frames=self._sensors.history_frames)
            trajectory = self.irlvla_agent.compute_trajectory(ours)
            return api.Trajectory(np.asarray(trajectory.poses, dtype=np.float32), self._trajectory_sampling)

    _CLASSES[key] = IrlvlaNavsimAgent
    return IrlvlaNavsimAgent


# ----------------------------------------------------------------------------------------------------------------
# navsim -> ours


class NavsimAgent(Agent):
    """A navsim ``AbstractAgent`` behind our interface.

    ``seed`` seeds torch's global generator when torch is already imported (navsim agents are torch modules and
    have no seed of their own); deterministic navsim agents need nothing.
    """

    def __init__(self, navsim_agent: Any, *, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES,
                 name: str | None = None):
        navsim_api()  # the same clear error as the other direction when navsim is missing
        if getattr(navsim_agent, "requires_scene", False):
            raise ValueError(f"navsim agent {navsim_agent.name()!r} requires the navsim Scene (privileged), which "
                             f"our AgentInput does not carry; it cannot be wrapped")
        self.navsim_agent = navsim_agent
        self.navsim_history_frames = navsim_history_frames
        self.name = name or str(navsim_agent.name())
        self._navsim_sensors = navsim_agent.get_sensor_config()
        self._sensors = from_navsim_sensor_config(self._navsim_sensors, navsim_history_frames)
        sampling = getattr(navsim_agent, "_trajectory_sampling", None)
        if sampling is not None and not _sampling_ok(sampling):
            raise ValueError(f"navsim agent {self.name!r} samples {sampling.num_poses} poses every "
                             f"{sampling.interval_length} s; NAVSIM scoring needs {NUM_POSES} every "
                             f"{POSE_INTERVAL_S} s")

    @classmethod
    def from_target(cls, target: str, *, navsim_history_frames: int = NAVSIM_HISTORY_FRAMES, **kwargs) -> "NavsimAgent":
        """Build the navsim agent ``"package.module:Class"`` with ``kwargs`` and wrap it."""
        module, _, attribute = target.partition(":")
        if not attribute:
            raise ValueError(f"expected 'package.module:Class', got {target!r}")
        navsim_api()
        return cls(getattr(importlib.import_module(module), attribute)(**kwargs),
                   navsim_history_frames=navsim_history_frames)

    def sensor_config(self) -> SensorConfig:
        return self._sensors

    def initialize(self) -> None:
        self.navsim_agent.initialize()

    def seed(self, seed: int) -> None:
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.manual_seed(seed)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        got = len(agent_input.ego_statuses)
        if got != self.navsim_history_frames:
            raise ValueError(f"{agent_input.token}: the navsim agent needs {self.navsim_history_frames} ego statuses, "
                             f"got {got}")
        navsim_input = to_navsim_agent_input(agent_input, self._navsim_sensors)
        return from_navsim_trajectory(self.navsim_agent.compute_trajectory(navsim_input))
