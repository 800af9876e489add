"""Core typed containers shared by every part of irlvla-bench.

Everything here is a frozen dataclass of NumPy arrays: the scorer, the agents and the reports all read the
same objects, and JSON / pickles exist only at the edges (``irlvla_bench.io``). Conventions follow nuPlan /
NAVSIM: ego poses refer to the rear-axle centre, object boxes to the box centre, headings are CCW from +x,
time stamps are integer microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Mapping

import numpy as np

# 10 Hz scoring horizon of NAVSIM: t = 0.0 .. 4.0 s.
NUM_SCORING_FRAMES = 41
# Agent output: 8 poses at 0.5 s (NAVSIM `TrajectorySampling(time_horizon=4, interval_length=0.5)`).
NUM_TRAJECTORY_POSES = 8
TRAJECTORY_INTERVAL_S = 0.5


class StateIndex(IntEnum):
    """Column order of simulated ego states (NAVSIM's ``StateIndex``)."""

    X = 0
    Y = 1
    HEADING = 2
    VELOCITY_X = 3
    VELOCITY_Y = 4
    ACCELERATION_X = 5
    ACCELERATION_Y = 6
    STEERING_ANGLE = 7
    STEERING_RATE = 8
    ANGULAR_VELOCITY = 9
    ANGULAR_ACCELERATION = 10


STATE_SIZE = len(StateIndex)


@dataclass(frozen=True)
class VehicleParameters:
    """Ego geometry (nuPlan ``VehicleParameters``)."""

    width: float
    front_length: float
    rear_length: float
    wheel_base: float
    cog_position_from_rear_axle: float
    height: float

    @property
    def length(self) -> float:
        return self.front_length + self.rear_length

    @property
    def half_length(self) -> float:
        return self.length / 2.0

    @property
    def half_width(self) -> float:
        return self.width / 2.0

    @property
    def rear_axle_to_center(self) -> float:
        return self.half_length - self.rear_length


# nuPlan's Chrysler Pacifica, hard-wired in NAVSIM's scorer, tracker and comfort metrics.
PACIFICA = VehicleParameters(
    width=1.1485 * 2.0,
    front_length=4.049,
    rear_length=1.127,
    wheel_base=3.089,
    cog_position_from_rear_axle=1.67,
    height=1.777,
)


@dataclass(frozen=True)
class EgoState:
    """Ego state at one instant; velocity and acceleration are rear-axle values in the ego frame."""

    rear_axle: np.ndarray  # (3,) x, y, heading, global frame
    velocity: np.ndarray  # (2,) m/s, ego frame
    acceleration: np.ndarray  # (2,) m/s^2, ego frame
    steering_angle: float = 0.0
    steering_rate: float = 0.0
    angular_velocity: float = 0.0
    angular_acceleration: float = 0.0
    time_us: int = 0

    def to_state_array(self) -> np.ndarray:
        """The state in ``StateIndex`` order (what NAVSIM's ``ego_state_to_state_array`` gives)."""
        state = np.zeros(STATE_SIZE, dtype=np.float64)
        state[0:3] = self.rear_axle
        state[3:5] = self.velocity
        state[5:7] = self.acceleration
        state[StateIndex.STEERING_ANGLE] = self.steering_angle
        state[StateIndex.STEERING_RATE] = self.steering_rate
        state[StateIndex.ANGULAR_VELOCITY] = self.angular_velocity
        state[StateIndex.ANGULAR_ACCELERATION] = self.angular_acceleration
        return state


class MapLayer(IntEnum):
    """nuPlan semantic map layers the scoring case may carry."""

    ROADBLOCK = 0
    LANE = 1
    ROADBLOCK_CONNECTOR = 2
    LANE_CONNECTOR = 3
    INTERSECTION = 4
    CARPARK_AREA = 5
    DRIVABLE_AREA = 6
    CROSSWALK = 7
    WALKWAYS = 8
    STOP_LINE = 9

    @classmethod
    def from_name(cls, name: str) -> "MapLayer":
        return cls[name.upper()]


@dataclass(frozen=True)
class MapObject:
    id: str
    layer: MapLayer
    polygon: np.ndarray  # (K, 2) exterior ring, open (closing point removed)
    holes: tuple[np.ndarray, ...] = ()
    roadblock_id: str | None = None
    lane_ids: tuple[str, ...] = ()
    baseline: np.ndarray | None = None  # (M, 2) centre polyline in driving direction
    speed_limit_mps: float | None = None
    incoming_ids: tuple[str, ...] = ()
    outgoing_ids: tuple[str, ...] = ()


class ObjectType(IntEnum):
    VEHICLE = 0
    PEDESTRIAN = 1
    BICYCLE = 2
    TRAFFIC_CONE = 3
    BARRIER = 4
    CZONE_SIGN = 5
    GENERIC_OBJECT = 6

    @property
    def is_agent(self) -> bool:
        # nuPlan AGENT_TYPES: these become `Agent`s (with velocity), the rest `StaticObject`s.
        return self in (ObjectType.VEHICLE, ObjectType.PEDESTRIAN, ObjectType.BICYCLE)

    @classmethod
    def from_name(cls, name: str) -> "ObjectType":
        return cls[name.upper()]


@dataclass(frozen=True)
class TrackedObjects:
    """Objects over the 41 scoring frames, one column per track token (ordered by first appearance).

    ``boxes[f, o]`` = (x, y, heading, length, width, height) of the box centre; rows of absent objects are
    NaN and ``present[f, o]`` is False there.
    """

    tokens: tuple[str, ...]
    types: np.ndarray  # (O,) ObjectType values
    boxes: np.ndarray  # (F, O, 6)
    velocities: np.ndarray  # (F, O, 2) global frame
    present: np.ndarray  # (F, O) bool

    @property
    def num_frames(self) -> int:
        return self.boxes.shape[0]

    @property
    def num_objects(self) -> int:
        return len(self.tokens)

    def first_appearance(self) -> np.ndarray:
        """Index of the first frame each object is present in (NAVSIM keys ``unique_objects`` on it)."""
        return np.argmax(self.present, axis=0)

    def select(self, keep: np.ndarray) -> "TrackedObjects":
        """Objects where ``keep`` (O,) is True."""
        keep = np.asarray(keep, dtype=bool)
        return TrackedObjects(
            tokens=tuple(t for t, k in zip(self.tokens, keep) if k),
            types=self.types[keep],
            boxes=self.boxes[:, keep],
            velocities=self.velocities[:, keep],
            present=self.present[:, keep],
        )


@dataclass(frozen=True)
class Proposals:
    """Trajectories to score: ego frame, rear axle, t = 0.5 .. 4.0 s."""

    ids: tuple[str, ...]
    poses: np.ndarray  # (N, 8, 3)
    labels: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class ScoringCase:
    """Everything NAVSIM's scorer consumes for one frame (a ``MetricCache``) plus the proposals to score."""

    case_id: str
    token: str
    scene_type: str  # "original" | "synthetic"
    time_us: int
    ego: EgoState
    map_objects: tuple[MapObject, ...]
    route_lane_ids: frozenset[str]
    centerline: np.ndarray  # (K, 3) global x, y, heading
    pdm_reference: np.ndarray  # (M, 3) global rear-axle poses at time_us + k * pdm_reference_interval_s
    pdm_reference_interval_s: float
    human_future: np.ndarray | None  # (8, 3) ego frame, original scenes only
    human_past: tuple[EgoState, ...]
    tracked_objects: TrackedObjects
    red_lane_connectors: tuple[frozenset[str], ...]  # per scoring frame
    proposals: Proposals
    vehicle: VehicleParameters = PACIFICA
    log_name: str = ""
    map_name: str = ""
    description: str = ""
    source: str = "<memory>"

    @property
    def is_original(self) -> bool:
        return self.scene_type == "original"

    def with_proposals(self, proposals: Proposals) -> "ScoringCase":
        from dataclasses import replace

        return replace(self, proposals=proposals)


@dataclass(frozen=True)
class StageMapping:
    """One navhard-style mapping: a first-stage (now, prev) pair and its second-stage (now, prev) pairs."""

    now: str
    prev: str
    second_stage: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class SceneGroup:
    group_id: str
    mappings: tuple[StageMapping, ...]
    frames: Mapping[str, ScoringCase] = field(default_factory=dict)
    description: str = ""
    source: str = "<memory>"

    @property
    def num_agents(self) -> int:
        return len(next(iter(self.frames.values())).proposals)


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap to [-pi, pi) the way nuPlan's ``principal_value`` does."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi
