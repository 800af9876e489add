"""The agent contract: what an agent asks for, what it is given, what it must return. No torch here.

Mirrors NAVSIM's ``AbstractAgent`` / ``AgentInput`` / ``Trajectory`` so that wrapping in either direction is a
field-by-field copy:
* ``AgentInput.ego_statuses`` oldest first, the last one is the current frame; poses are relative to the current
  rear-axle pose (so the current pose is (0, 0, 0)), velocities and accelerations in each frame's ego axes,
  driving command one-hot (left, straight, right, unknown) as in OpenScene;
* ``AgentInput.cameras[i]`` / ``lidars[i]`` belong to ``ego_statuses[i]``; frames and sensors the agent did not
  request are absent (empty dict / ``None``), never silently filled;
* the output is 8 ego-frame poses (x, y, heading) at 0.5 s, starting 0.5 s after the current frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from irlvla_bench.registry import Registry

NUM_POSES = 8
POSE_INTERVAL_S = 0.5
CAMERA_NAMES = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")
# OpenScene's one-hot driving command order.
DRIVING_COMMANDS = ("left", "straight", "right", "unknown")


class TrajectoryError(ValueError):
    """An agent returned something that is not a valid trajectory."""


class TrajectoryShapeError(TrajectoryError):
    """Wrong number of poses or wrong pose size (the contract checker reports it as such)."""


class TrajectoryValueError(TrajectoryError):
    """NaN or inf in the poses."""


class CheckpointRequiredError(ValueError):
    """A trainable agent was built without the checkpoint it needs (``make_agent("NAME:CHECKPOINT")``)."""


@dataclass(frozen=True)
class Trajectory:
    """``poses`` (8, 3): ego-frame x [m], y [m], heading [rad] at 0.5 s, 1.0 s, ..., 4.0 s."""

    poses: np.ndarray
    interval_s: float = POSE_INTERVAL_S

    def __post_init__(self) -> None:
        poses = np.asarray(self.poses, dtype=np.float64)
        if poses.shape != (NUM_POSES, 3):
            raise TrajectoryShapeError(f"trajectory poses must have shape ({NUM_POSES}, 3), got {poses.shape}")
        if not np.isfinite(poses).all():
            bad = sorted({int(i) for i in np.argwhere(~np.isfinite(poses))[:, 0]})
            raise TrajectoryValueError(f"trajectory poses contain NaN or inf at pose indices {bad}")
        if self.interval_s != POSE_INTERVAL_S:
            raise TrajectoryError(f"trajectory interval must be {POSE_INTERVAL_S} s, got {self.interval_s}")
        poses.setflags(write=False)
        object.__setattr__(self, "poses", poses)


@dataclass(frozen=True)
class SensorConfig:
    """What an agent needs. ``sensor_frames`` index the history (0 = oldest, ``history_frames - 1`` = current)."""

    history_frames: int = 4
    cameras: tuple[str, ...] = ()
    lidar: bool = False
    sensor_frames: tuple[int, ...] | None = None  # None: the current frame only

    def __post_init__(self) -> None:
        if self.history_frames < 1:
            raise ValueError("history_frames must be >= 1 (the current frame)")
        unknown = [c for c in self.cameras if c not in CAMERA_NAMES]
        if unknown:
            raise ValueError(f"unknown cameras {unknown}; expected some of {', '.join(CAMERA_NAMES)}")
        frames = self.frames_with_sensors
        if any(not 0 <= f < self.history_frames for f in frames):
            raise ValueError(f"sensor_frames {frames} must index the {self.history_frames} history frames")

    @property
    def frames_with_sensors(self) -> tuple[int, ...]:
        return (self.history_frames - 1,) if self.sensor_frames is None else tuple(self.sensor_frames)

    @property
    def uses_sensors(self) -> bool:
        return bool(self.cameras) or self.lidar


EGO_STATUS_ONLY = SensorConfig()


@dataclass(frozen=True)
class EgoStatus:
    pose: np.ndarray  # (3,) x, y, heading relative to the current rear-axle pose
    velocity: np.ndarray  # (2,) m/s in this frame's ego axes
    acceleration: np.ndarray  # (2,) m/s^2 in this frame's ego axes
    driving_command: np.ndarray  # (4,) one-hot, see DRIVING_COMMANDS


@dataclass(frozen=True)
class CameraImage:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    intrinsic: np.ndarray  # (3, 3)
    sensor2lidar_rotation: np.ndarray  # (3, 3)
    sensor2lidar_translation: np.ndarray  # (3,)
    distortion: np.ndarray  # (5,)


@dataclass(frozen=True)
class AgentInput:
    token: str
    ego_statuses: tuple[EgoStatus, ...]
    cameras: tuple[Mapping[str, CameraImage], ...]
    lidars: tuple[np.ndarray | None, ...]  # (6, N) x, y, z, intensity, ring, lidar_info in the lidar frame
    # Privileged agents (human, PDM-Closed) also get the scoring case; sensor agents never do.
    privileged: Any = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def current(self) -> EgoStatus:
        return self.ego_statuses[-1]


def restrict_input(agent_input: AgentInput, sensors: SensorConfig, *, privileged: bool = False) -> AgentInput:
    """The part of a richer input that an agent with ``sensors`` is entitled to see.

    Keeps the last ``sensors.history_frames`` ego statuses (poses stay relative to the current frame, which is
    still the last one), the requested cameras and LiDAR at the requested frames only, and the privileged case
    only for privileged agents. Asking for something the input does not hold is a ``ValueError``: filling it in
    silently would hide a bug in whoever built the input.
    """
    n = sensors.history_frames
    have = len(agent_input.ego_statuses)
    if have < n:
        raise ValueError(f"{agent_input.token}: the agent requests {n} history frames, the input has {have}")
    cams_src, lidars_src = agent_input.cameras[have - n:], agent_input.lidars[have - n:]
    wanted = set(sensors.frames_with_sensors)
    cameras: list[Mapping[str, CameraImage]] = []
    lidars: list[np.ndarray | None] = []
    for i in range(n):
        if i not in wanted:
            cameras.append({})
            lidars.append(None)
            continue
        missing = [c for c in sensors.cameras if c not in cams_src[i]]
        if missing:
            raise ValueError(f"{agent_input.token}: history frame {i} has no image for cameras {missing}")
        cameras.append({c: cams_src[i][c] for c in sensors.cameras})
        if sensors.lidar and lidars_src[i] is None:
            raise ValueError(f"{agent_input.token}: history frame {i} has no LiDAR point cloud")
        lidars.append(lidars_src[i] if sensors.lidar else None)
    if privileged and agent_input.privileged is None:
        raise ValueError(f"{agent_input.token}: a privileged agent needs the scoring case in AgentInput.privileged")
    return AgentInput(token=agent_input.token, ego_statuses=tuple(agent_input.ego_statuses[have - n:]),
                      cameras=tuple(cameras), lidars=tuple(lidars),
                      privileged=agent_input.privileged if privileged else None, extras=agent_input.extras)


class Agent:
    """Base class. Subclasses set ``name`` and implement ``compute_trajectory``.

    ``requires_privileged`` agents read ``agent_input.privileged`` (the scoring case); runners refuse to submit
    them to NAVSIM's leaderboard. ``seed`` must make the output a function of (input, seed).
    """

    name: str = ""
    requires_privileged: bool = False

    def sensor_config(self) -> SensorConfig:
        return EGO_STATUS_ONLY

    def initialize(self) -> None:
        """Load weights etc.; called once before the first input."""

    def seed(self, seed: int) -> None:
        """Deterministic agents ignore it; stochastic ones reset their generator."""

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        raise NotImplementedError

    def compute_trajectories(self, agent_inputs: Sequence[AgentInput]) -> list[Trajectory]:
        """Batched form; override when the agent can batch (e.g. one forward pass)."""
        return [self.compute_trajectory(x) for x in agent_inputs]


AGENTS: Registry[Agent] = Registry("agent")


def register_agent(name: str, factory=None):
    """``@register_agent("name")`` on a class/factory, or ``register_agent("name", "pkg.module:Class")``."""
    return AGENTS.register(name, factory)


def parse_agent_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:CHECKPOINT`` (the checkpoint path may itself contain colons)."""
    name, sep, checkpoint = spec.partition(":")
    return name, (checkpoint if sep and checkpoint else None)


def make_agent(spec: str, **kwargs) -> Agent:
    """Build a registered agent from ``NAME[:CHECKPOINT]``; the checkpoint goes to the factory as ``checkpoint``."""
    import agents.registered  # noqa: F401  (fills the registry)

    name, checkpoint = parse_agent_spec(spec)
    if checkpoint is not None:
        kwargs["checkpoint"] = checkpoint
    agent = AGENTS.create(name, **kwargs)
    if not agent.name:
        agent.name = name
    return agent


def available_agents() -> list[str]:
    import agents.registered  # noqa: F401

    return AGENTS.names()
