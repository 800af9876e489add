"""nuPlan objects inside NAVSIM's synthetic-scene pickles, without nuplan-devkit.

NAVSIM's ``Scene.save_to_disk`` pickles nuPlan ``DetectionsTracks`` and ``TrafficLightStatuses`` into
``extended_detections_tracks`` / ``extended_traffic_light_data``. We read those pickles with an unpickler that maps
nuPlan's classes onto light shadow classes with the same instance state, and write them with a pickler that emits
nuPlan's module paths, so NAVSIM (with the real devkit) unpickles our files into real nuPlan objects.
"""

from __future__ import annotations

import io
import pickle
from enum import Enum, IntEnum
from typing import Any

import numpy as np

_SR = "nuplan.common.actor_state.state_representation"


class _Shadow:
    """Marker: pickled under ``_nuplan_path`` instead of this module."""

    _nuplan_path: tuple[str, str]


def _shadow(module: str, name: str):
    def deco(cls):
        cls._nuplan_path = (module, name)
        return cls

    return deco


@_shadow(_SR, "TimePoint")
class TimePoint(_Shadow):
    __slots__ = ("time_us",)

    def __init__(self, time_us: int):
        self.time_us = int(time_us)


@_shadow(_SR, "Point2D")
class Point2D(_Shadow):
    __slots__ = ("x", "y")


@_shadow(_SR, "StateSE2")
class StateSE2(_Shadow):
    __slots__ = ("x", "y", "heading")

    def __init__(self, x: float, y: float, heading: float):
        self.x, self.y, self.heading = float(x), float(y), float(heading)


@_shadow(_SR, "StateVector2D")
class StateVector2D(_Shadow):
    __slots__ = ("_x", "_y", "_array")

    def __init__(self, x: float, y: float):
        self._x, self._y = float(x), float(y)
        self._array = np.array([self._x, self._y], dtype=np.float64)

    @property
    def x(self) -> float:
        return self._x

    @property
    def y(self) -> float:
        return self._y


@_shadow("nuplan.common.actor_state.oriented_box", "OrientedBox")
class OrientedBox(_Shadow):
    def __init__(self, center: StateSE2, length: float, width: float, height: float):
        self._center, self._length, self._width, self._height = center, float(length), float(width), float(height)

    @property
    def center(self) -> StateSE2:
        return self._center


@_shadow("nuplan.common.actor_state.scene_object", "SceneObjectMetadata")
class SceneObjectMetadata(_Shadow):
    def __init__(self, timestamp_us: int, token: str, track_id, track_token: str | None, category_name=None):
        self.timestamp_us, self.token, self.track_id = int(timestamp_us), token, track_id
        self.track_token, self.category_name = track_token, category_name


class TrackedObjectType(Enum):
    """Values as in nuPlan (its members are ``(int, name)`` tuples turned into int values)."""

    VEHICLE = 0, "vehicle"
    PEDESTRIAN = 1, "pedestrian"
    BICYCLE = 2, "bicycle"
    TRAFFIC_CONE = 3, "traffic_cone"
    BARRIER = 4, "barrier"
    CZONE_SIGN = 5, "czone_sign"
    GENERIC_OBJECT = 6, "generic_object"
    EGO = 7, "ego"

    def __new__(cls, value: int, name: str):
        member = object.__new__(cls)
        member._value_ = value
        member.fullname = name
        return member

    @classmethod
    def from_name(cls, name: str) -> "TrackedObjectType":
        return next(m for m in cls if m.fullname == name)


TrackedObjectType._nuplan_path = ("nuplan.common.actor_state.tracked_objects_types", "TrackedObjectType")
AGENT_NAMES = ("vehicle", "pedestrian", "bicycle", "ego")


@_shadow("nuplan.common.actor_state.agent", "Agent")
class Agent(_Shadow):
    def __init__(self, tracked_object_type: TrackedObjectType, box: OrientedBox, velocity: StateVector2D,
                 metadata: SceneObjectMetadata):
        # Attribute names and order of nuPlan's AgentTemporalState + SceneObject + AgentState constructors.
        self._initial_time_stamp = TimePoint(metadata.timestamp_us)
        self.predictions = []
        self.past_trajectory = None
        self._metadata = metadata
        self.instance_token = None
        self._tracked_object_type = tracked_object_type
        self._box = box
        self._velocity = velocity
        self._angular_velocity = None


@_shadow("nuplan.common.actor_state.static_object", "StaticObject")
class StaticObject(_Shadow):
    def __init__(self, tracked_object_type: TrackedObjectType, box: OrientedBox, metadata: SceneObjectMetadata):
        self._metadata = metadata
        self.instance_token = None
        self._tracked_object_type = tracked_object_type
        self._box = box
        self.predictions = None
        self.past_trajectory = None
        self.velocity = StateVector2D(0.0, 0.0)


@_shadow("nuplan.common.actor_state.tracked_objects", "TrackedObjects")
class TrackedObjects(_Shadow):
    def __init__(self, tracked_objects: list):
        self.tracked_objects = sorted(tracked_objects, key=lambda o: o._tracked_object_type.value)


@_shadow("nuplan.planning.simulation.observation.observation_type", "DetectionsTracks")
class DetectionsTracks(_Shadow):
    def __init__(self, tracked_objects: TrackedObjects):
        self.tracked_objects = tracked_objects


class TrafficLightStatusType(IntEnum):
    GREEN = 0
    YELLOW = 1
    RED = 2
    UNKNOWN = 3


TrafficLightStatusType._nuplan_path = ("nuplan.common.maps.maps_datatypes", "TrafficLightStatusType")


@_shadow("nuplan.common.maps.maps_datatypes", "TrafficLightStatusData")
class TrafficLightStatusData(_Shadow):
    def __init__(self, status: TrafficLightStatusType, lane_connector_id: int, timestamp: int):
        self.status, self.lane_connector_id, self.timestamp = status, lane_connector_id, int(timestamp)


@_shadow("nuplan.common.maps.maps_datatypes", "TrafficLightStatuses")
class TrafficLightStatuses(_Shadow):
    def __init__(self, traffic_lights: list[TrafficLightStatusData]):
        self.traffic_lights = traffic_lights


_SHADOWS = {cls._nuplan_path: cls for cls in (
    TimePoint, Point2D, StateSE2, StateVector2D, OrientedBox, SceneObjectMetadata, TrackedObjectType, Agent,
    StaticObject, TrackedObjects, DetectionsTracks, TrafficLightStatusType, TrafficLightStatusData,
    TrafficLightStatuses)}


class _Opaque:
    """Any other nuPlan class met while reading (e.g. predicted trajectories): keeps its state, does nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            dict_state, slot_state = state
            self.__dict__.update(dict_state or {})
            self.__dict__.update(slot_state or {})
        elif isinstance(state, dict):
            self.__dict__.update(state)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module.startswith("nuplan.") or module.startswith("navsim."):
            shadow = _SHADOWS.get((module, name))
            if shadow is not None:
                return shadow
            return type(name, (_Opaque,), {"__module__": module})
        return super().find_class(module, name)


def loads(data: bytes) -> Any:
    return _Unpickler(io.BytesIO(data)).load()


def load(handle) -> Any:
    return _Unpickler(handle).load()


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets us name classes by path without importing them
    def save_global(self, obj, name=None):
        path = getattr(obj, "_nuplan_path", None)
        if path is None or not isinstance(obj, type):
            return super().save_global(obj, name)
        module, qualname = path
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("utf-8"))
        self.memoize(obj)


def dumps(obj: Any, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------------------------
# Conversions between arrays and nuPlan objects


def detections_tracks(tokens, names, boxes, velocities, instance_tokens, timestamp_us: int) -> DetectionsTracks:
    """Global-frame boxes (N, 6: x, y, heading, length, width, height) and velocities (N, 2) -> DetectionsTracks."""
    objects = []
    for token, name, box, vel, inst in zip(tokens, names, boxes, velocities, instance_tokens):
        obj_type = TrackedObjectType.from_name(name)
        obox = OrientedBox(StateSE2(box[0], box[1], box[2]), box[3], box[4], box[5])
        meta = SceneObjectMetadata(timestamp_us, inst, None, token, None)
        if name in AGENT_NAMES:
            objects.append(Agent(obj_type, obox, StateVector2D(vel[0], vel[1]), meta))
        else:
            objects.append(StaticObject(obj_type, obox, meta))
    return DetectionsTracks(TrackedObjects(objects))


def detections_to_arrays(detections: Any, source: str, where: str) -> dict:
    """Read shadow (or real-path) DetectionsTracks back into arrays; errors name the pickle and index."""
    from irlvla_bench.errors import InputError

    try:
        objects = detections.tracked_objects.tracked_objects
        tokens, names, boxes, vels, inst = [], [], [], [], []
        for obj in objects:
            box = obj._box
            c = box._center
            obj_type = obj._tracked_object_type
            name = obj_type.fullname if isinstance(obj_type, TrackedObjectType) else str(obj_type).lower()
            tokens.append(obj._metadata.track_token)
            inst.append(obj._metadata.token)
            names.append(name)
            boxes.append([c.x, c.y, c.heading, box._length, box._width, box._height])
            if name in AGENT_NAMES:
                v = obj._velocity
                vels.append([v._x, v._y])
            else:
                vels.append([0.0, 0.0])
    except AttributeError as exc:
        raise InputError(source, where, f"not a nuPlan DetectionsTracks: {exc}") from None
    return {
        "track_tokens": tokens,
        "names": names,
        "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 6),
        "velocities": np.asarray(vels, dtype=np.float64).reshape(-1, 2),
        "instance_tokens": inst,
    }


def traffic_light_statuses(lights: list[tuple[int, bool]], timestamp_us: int) -> TrafficLightStatuses:
    return TrafficLightStatuses([
        TrafficLightStatusData(TrafficLightStatusType.RED if red else TrafficLightStatusType.GREEN, int(cid), timestamp_us)
        for cid, red in lights
    ])


def traffic_lights_to_list(statuses: Any, source: str, where: str) -> list[tuple[str, bool]]:
    from irlvla_bench.errors import InputError

    try:
        return [(str(d.lane_connector_id), int(d.status) == int(TrafficLightStatusType.RED)) for d in statuses.traffic_lights]
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(source, where, f"not a nuPlan TrafficLightStatuses: {exc}") from None
