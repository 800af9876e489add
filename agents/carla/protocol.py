"""What the CARLA adapter hands to a trajectory-emitting agent, and what it expects back.

Frames: the *ego frame* is x forward, y left, heading counter-clockwise in radians (NAVSIM's convention).  The
*world frame* given to agents is CARLA's map frame mirrored to be right-handed (x, -y, -yaw), so that the same
conventions hold everywhere in the project.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np

TRAJECTORY_POSES = 8  # 4 s horizon
TRAJECTORY_INTERVAL_S = 0.5


class RoadOption(IntEnum):
    """CARLA's ``agents.navigation.local_planner.RoadOption`` values (not shipped in the carla wheel)."""

    VOID = -1
    LEFT = 1
    RIGHT = 2
    STRAIGHT = 3
    LANEFOLLOW = 4
    CHANGELANELEFT = 5
    CHANGELANERIGHT = 6

    @classmethod
    def coerce(cls, value: Any) -> RoadOption:
        """Accept our enum, CARLA's enum (anything with ``.value``) or an int."""
        raw = getattr(value, "value", value)
        try:
            return cls(int(raw))
        except (TypeError, ValueError):
            raise ValueError(f"not a RoadOption: {value!r}") from None


# NAVSIM-style one-hot driving command: [left, straight, right, unknown].
_COMMAND_INDEX = {
    RoadOption.LEFT: 0, RoadOption.CHANGELANELEFT: 0,
    RoadOption.STRAIGHT: 1, RoadOption.LANEFOLLOW: 1,
    RoadOption.RIGHT: 2, RoadOption.CHANGELANERIGHT: 2,
    RoadOption.VOID: 3,
}


def driving_command_one_hot(option: RoadOption) -> np.ndarray:
    out = np.zeros(4, dtype=np.int64)
    out[_COMMAND_INDEX[option]] = 1
    return out


@dataclass(frozen=True)
class EgoStatus:
    pose: np.ndarray  # (3,) x, y, heading in the right-handed world frame [m, m, rad]
    velocity: np.ndarray  # (2,) ego frame [m/s]; lateral part unobserved by the sensor rig, 0
    acceleration: np.ndarray  # (2,) ego frame [m/s^2], from the IMU
    yaw_rate: float  # [rad/s], counter-clockwise positive, from the IMU
    speed: float  # forward speed from the speedometer [m/s]
    gnss: np.ndarray  # (3,) lat, lon, alt as received


@dataclass(frozen=True)
class CarlaAgentInput:
    """One tick of sensor data, converted."""

    step: int
    timestamp: float  # simulation seconds
    ego_status: EgoStatus
    driving_command: np.ndarray  # (4,) one-hot [left, straight, right, unknown]
    road_option: RoadOption  # raw command of the next route node
    target_point: np.ndarray  # (2,) next route node in the ego frame [m]
    route_ahead: np.ndarray  # (K, 2) upcoming route nodes in the ego frame [m]
    cameras: Mapping[str, np.ndarray]  # sensor id -> RGB uint8 (H, W, 3)
    camera_specs: Mapping[str, Mapping[str, float]]  # sensor id -> mount (x, y, z, roll, pitch, yaw, fov, ...)


@runtime_checkable
class TrajectoryAgent(Protocol):
    """Anything with ``compute_trajectory``; returns (8, 3) ego-frame poses at 0.5 s, or an object with ``.poses``."""

    def compute_trajectory(self, agent_input: CarlaAgentInput) -> Any: ...


def trajectory_poses(output: Any, num_poses: int = TRAJECTORY_POSES) -> np.ndarray:
    """Validate an agent's output and return it as a float (num_poses, 3) array."""
    poses = getattr(output, "poses", output)
    arr = np.asarray(poses, dtype=np.float64)
    if arr.shape != (num_poses, 3):
        raise ValueError(f"trajectory must be ({num_poses}, 3) ego-frame poses (x, y, heading) at "
                         f"{TRAJECTORY_INTERVAL_S} s, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("trajectory contains non-finite values")
    return arr
