"""NAVSIM / OpenScene log pickles (``navsim_logs/<split>/<log>.pkl``) and synthetic scene pickles
(``synthetic_scene_pickles/<token>.pkl``): validated readers into typed frames (global frame) and writers.

The keys, shapes and frames follow ``shared/spec/navsim-data-format.md`` (b) and (c): annotations are stored
relative to the ego rear axle of the same frame, the ego rotation is a (w, x, y, z) quaternion, ego velocity and
acceleration are rounded to float32 the way NAVSIM's ``EgoStatus`` does.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from irlvla_bench.errors import InputError
from irlvla_bench.io import nuplan_pickle
from irlvla_bench.io.sensors import CAMERA_NAMES

FRAME_KEYS = (
    "token", "timestamp", "log_name", "scene_token", "map_location", "roadblock_ids", "traffic_lights",
    "ego2global_translation", "ego2global_rotation", "ego_dynamic_state", "driving_command", "anns", "cams",
    "lidar_path",
)
ANNS_KEYS = ("gt_boxes", "gt_names", "gt_velocity_3d", "instance_tokens", "track_tokens")
CATEGORIES = ("vehicle", "pedestrian", "bicycle", "traffic_cone", "barrier", "czone_sign", "generic_object", "ego")
SYNTHETIC_TOKEN_LENGTH = 17  # NAVSIM: len(token) == 17 <=> synthetic scene


@dataclass(frozen=True)
class LogFrame:
    """One 2 Hz key frame, everything in the global (map) frame."""

    token: str
    timestamp_us: int
    log_name: str
    map_location: str
    roadblock_ids: tuple[str, ...]
    traffic_lights: tuple[tuple[str, bool], ...]
    ego_pose: np.ndarray  # (3,) rear axle x, y, heading
    ego_velocity: np.ndarray  # (2,) ego frame, float32-rounded
    ego_acceleration: np.ndarray  # (2,) ego frame, float32-rounded
    driving_command: np.ndarray  # (4,)
    track_tokens: tuple[str, ...]
    names: tuple[str, ...]
    boxes: np.ndarray  # (N, 6) x, y, heading, length, width, height (box centre)
    velocities: np.ndarray  # (N, 2) global
    instance_tokens: tuple[str, ...]
    scene_token: str = ""
    lidar_path: str | None = None
    cams: dict | None = None


def normalize_angle(a):
    return np.arctan2(np.sin(a), np.cos(a))


def ego_to_global(ego_pose: np.ndarray, boxes_ego: np.ndarray, vel_ego: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NAVSIM's ``annotations_to_detection_tracks``: rotate by the ego heading, translate by the rear axle."""
    c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
    x = c * boxes_ego[:, 0] - s * boxes_ego[:, 1] + ego_pose[0]
    y = s * boxes_ego[:, 0] + c * boxes_ego[:, 1] + ego_pose[1]
    h = normalize_angle(boxes_ego[:, 6] + ego_pose[2])
    boxes = np.column_stack([x, y, h, boxes_ego[:, 3], boxes_ego[:, 4], boxes_ego[:, 5]])
    vel = np.column_stack([c * vel_ego[:, 0] - s * vel_ego[:, 1], s * vel_ego[:, 0] + c * vel_ego[:, 1]])
    return boxes, vel


def global_to_ego(ego_pose: np.ndarray, boxes: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`ego_to_global`: (N, 7) ``gt_boxes`` and (N, 3) ``gt_velocity_3d``."""
    c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
    dx, dy = boxes[:, 0] - ego_pose[0], boxes[:, 1] - ego_pose[1]
    x, y = c * dx + s * dy, -s * dx + c * dy
    yaw = boxes[:, 2] - ego_pose[2]
    gt = np.column_stack([x, y, boxes[:, 5] / 2.0, boxes[:, 3], boxes[:, 4], boxes[:, 5], yaw])
    v = np.column_stack([c * vel[:, 0] + s * vel[:, 1], -s * vel[:, 0] + c * vel[:, 1], np.zeros(len(vel))])
    return gt, v


def _yaw(q: np.ndarray) -> float:
    q = q / np.linalg.norm(q)
    w, x, y, z = q
    return float(np.arctan2(2 * (w * z - x * y), 1 - 2 * (y * y + z * z)))


def _load_pickle(path: Path, *, nuplan: bool = False) -> Any:
    try:
        with open(path, "rb") as handle:
            return nuplan_pickle.load(handle) if nuplan else pickle.load(handle)
    except FileNotFoundError:
        raise InputError(str(path), "<file>", "no such file") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError, ImportError) as exc:
        raise InputError(str(path), "<file>", f"truncated or corrupt pickle ({type(exc).__name__}: {exc})") from None


def _array(value: Any, source: str, where: str, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, where, "expected a numeric array") from None
    if arr.size == 0 and len(shape) == 2:
        arr = arr.reshape(0, shape[1] or 0)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        raise InputError(source, where, f"expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(source, where, "non-finite values")
    return arr


def _annotations(anns: Any, source: str, where: str, keys: tuple[str, str, str, str, str]) -> tuple:
    """(boxes (N,7), names, velocities (N,3), instance tokens, track tokens) with equal lengths checked."""
    if not isinstance(anns, dict):
        raise InputError(source, where, f"expected a dict, got {type(anns).__name__}")
    for key in keys:
        if key not in anns:
            raise InputError(source, f"{where}.{key}", "missing key")
    boxes = _array(anns[keys[0]], source, f"{where}.{keys[0]}", (None, 7))
    names = tuple(str(n) for n in anns[keys[1]])
    vel = _array(anns[keys[2]], source, f"{where}.{keys[2]}", (None, 3))
    inst = tuple(str(t) for t in anns[keys[3]])
    tracks = tuple(str(t) for t in anns[keys[4]])
    lengths = {len(boxes), len(names), len(vel), len(inst), len(tracks)}
    if len(lengths) != 1:
        raise InputError(source, where, f"annotation lists differ in length: {sorted(lengths)}")
    for i, name in enumerate(names):
        if name not in CATEGORIES:
            raise InputError(source, f"{where}.{keys[1]}[{i}]", f"unknown category {name!r}; known: {CATEGORIES}")
    for i, token in enumerate(tracks):
        if "red_light" in token:
            raise InputError(source, f"{where}.{keys[4]}[{i}]", "track tokens must not contain 'red_light'")
    return boxes, names, vel, inst, tracks


def _traffic_lights(value: Any, source: str, where: str) -> tuple[tuple[str, bool], ...]:
    if not isinstance(value, (list, tuple)):
        raise InputError(source, where, "expected a list of (lane_connector_id, is_red) pairs")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise InputError(source, f"{where}[{i}]", "expected a 2-tuple (lane_connector_id, is_red)")
        out.append((str(item[0]), bool(item[1])))
    return tuple(out)


def _roadblocks(value: Any, source: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InputError(source, where, "expected a list of str roadblock ids")
    return tuple(value)


def parse_log_frame(frame: Any, source: str, index: int) -> LogFrame:
    where = f"frame[{index}]"
    if not isinstance(frame, dict):
        raise InputError(source, where, f"expected a dict, got {type(frame).__name__}")
    for key in FRAME_KEYS:
        if key not in frame:
            raise InputError(source, f"{where}.{key}", "missing key")
    token = frame["token"]
    if not isinstance(token, str) or not token:
        raise InputError(source, f"{where}.token", "expected a non-empty str")
    ts = frame["timestamp"]
    if isinstance(ts, bool) or not isinstance(ts, (int, np.integer)):
        raise InputError(source, f"{where}.timestamp", f"expected integer microseconds, got {ts!r}")
    cams = frame["cams"]
    if not isinstance(cams, dict):
        raise InputError(source, f"{where}.cams", "expected a dict of the eight cameras")
    for cam in CAMERA_NAMES:
        if cam not in cams and cam.lower() not in cams:
            raise InputError(source, f"{where}.cams.{cam}", "missing camera (NAVSIM needs all eight keys)")
    if frame["lidar_path"] is None:
        raise InputError(source, f"{where}.lidar_path", "must be a path string, not None")
    trans = _array(frame["ego2global_translation"], source, f"{where}.ego2global_translation", (3,))
    rot = _array(frame["ego2global_rotation"], source, f"{where}.ego2global_rotation", (4,))
    if np.linalg.norm(rot) < 1e-9:
        raise InputError(source, f"{where}.ego2global_rotation", "zero quaternion")
    dyn = _array(frame["ego_dynamic_state"], source, f"{where}.ego_dynamic_state", (None,))
    if len(dyn) < 4:
        raise InputError(source, f"{where}.ego_dynamic_state", f"expected [vx, vy, ax, ay], got {len(dyn)} values")
    ego_pose = np.array([trans[0], trans[1], _yaw(rot)])
    boxes_e, names, vel_e, inst, tracks = _annotations(frame["anns"], source, f"{where}.anns", ANNS_KEYS)
    boxes, vel = ego_to_global(ego_pose, boxes_e, vel_e)
    return LogFrame(
        token=token,
        timestamp_us=int(ts),
        log_name=str(frame["log_name"]),
        map_location=str(frame["map_location"]),
        roadblock_ids=_roadblocks(frame["roadblock_ids"], source, f"{where}.roadblock_ids"),
        traffic_lights=_traffic_lights(frame["traffic_lights"], source, f"{where}.traffic_lights"),
        ego_pose=ego_pose,
        ego_velocity=np.asarray(dyn[:2], dtype=np.float32).astype(np.float64),
        ego_acceleration=np.asarray(dyn[2:4], dtype=np.float32).astype(np.float64),
        driving_command=np.asarray(frame["driving_command"]),
        track_tokens=tracks,
        names=names,
        boxes=boxes,
        velocities=vel,
        instance_tokens=inst,
        scene_token=str(frame["scene_token"]),
        lidar_path=str(frame["lidar_path"]),
        cams=cams,
    )


def read_log_raw(path: str | Path) -> list[dict]:
    path = Path(path)
    data = _load_pickle(path)
    if not isinstance(data, list):
        raise InputError(str(path), "<root>", f"expected a list of frame dicts, got {type(data).__name__}")
    return data


def read_log(path: str | Path) -> list[LogFrame]:
    """All frames of a log, validated; the file stem must equal every frame's ``log_name`` (NAVSIM's
    ``cache_data`` silently skips logs where it does not)."""
    path = Path(path)
    raw = read_log_raw(path)
    frames = [parse_log_frame(f, str(path), i) for i, f in enumerate(raw)]
    for i, f in enumerate(frames):
        if f.log_name != path.stem:
            raise InputError(str(path), f"frame[{i}].log_name", f"{f.log_name!r} differs from the file name {path.stem!r}")
    times = [f.timestamp_us for f in frames]
    if any(b <= a for a, b in zip(times, times[1:])):
        raise InputError(str(path), "timestamp", "frames must be in strictly increasing time order")
    return frames


def _atomic_pickle(path: Path, obj: Any, *, nuplan: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = nuplan_pickle.dumps(obj) if nuplan else pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_log(path: str | Path, frames: list[dict]) -> None:
    """Atomically write a log pickle (list of frame dicts in time order)."""
    _atomic_pickle(Path(path), frames)


# ----------------------------------------------------------------------------------------------------------------
# Synthetic scenes (navhard-style second stage)


@dataclass(frozen=True)
class SyntheticScene:
    metadata: dict
    frames: tuple[LogFrame, ...]  # history frames, oldest first; the last is the current frame
    extended_tracks: tuple[dict, ...]  # per future key frame: arrays as from ``detections_to_arrays``
    extended_lights: tuple[tuple[tuple[str, bool], ...], ...] | None
    source: str = ""

    @property
    def token(self) -> str:
        return self.metadata["initial_token"]


METADATA_KEYS = ("log_name", "scene_token", "map_name", "initial_token", "num_history_frames", "num_future_frames")


def read_synthetic_scene(path: str | Path) -> SyntheticScene:
    path = Path(path)
    src = str(path)
    data = _load_pickle(path, nuplan=True)
    if not isinstance(data, dict):
        raise InputError(src, "<root>", "expected a scene dict")
    for key in ("scene_metadata", "frames", "extended_traffic_light_data", "extended_detections_tracks"):
        if key not in data:
            raise InputError(src, key, "missing key")
    meta = data["scene_metadata"]
    if not isinstance(meta, dict):
        raise InputError(src, "scene_metadata", "expected a dict")
    for key in METADATA_KEYS:
        if key not in meta:
            raise InputError(src, f"scene_metadata.{key}", "missing key")
    frames = []
    for i, fr in enumerate(data["frames"]):
        where = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise InputError(src, where, "expected a dict")
        for key in ("token", "timestamp", "roadblock_ids", "traffic_lights", "annotations", "ego_status", "camera_dict"):
            if key not in fr:
                raise InputError(src, f"{where}.{key}", "missing key")
        status = fr["ego_status"]
        if not isinstance(status, dict) or "ego_pose" not in status:
            raise InputError(src, f"{where}.ego_status.ego_pose", "missing")
        pose = _array(status["ego_pose"], src, f"{where}.ego_status.ego_pose", (3,))
        vel2 = np.asarray(status.get("ego_velocity", np.zeros(2)), dtype=np.float32).astype(np.float64)
        acc2 = np.asarray(status.get("ego_acceleration", np.zeros(2)), dtype=np.float32).astype(np.float64)
        boxes_e, names, vel_e, inst, tracks = _annotations(
            fr["annotations"], src, f"{where}.annotations", ("boxes", "names", "velocity_3d", "instance_tokens", "track_tokens"))
        boxes, vel = ego_to_global(pose, boxes_e, vel_e)
        frames.append(LogFrame(
            token=str(fr["token"]), timestamp_us=int(fr["timestamp"]), log_name=str(meta["log_name"]),
            map_location=str(meta["map_name"]),
            roadblock_ids=_roadblocks(fr["roadblock_ids"], src, f"{where}.roadblock_ids"),
            traffic_lights=_traffic_lights(fr["traffic_lights"], src, f"{where}.traffic_lights"),
            ego_pose=pose, ego_velocity=vel2, ego_acceleration=acc2,
            driving_command=np.asarray(status.get("driving_command", np.zeros(4))), track_tokens=tracks, names=names,
            boxes=boxes, velocities=vel, instance_tokens=inst, scene_token=str(meta["scene_token"]),
            lidar_path=fr.get("lidar_path"), cams=fr["camera_dict"]))
    if not frames:
        raise InputError(src, "frames", "empty")
    ext = data["extended_detections_tracks"]
    if not isinstance(ext, (list, tuple)):
        raise InputError(src, "extended_detections_tracks", "expected a list of DetectionsTracks")
    tracks_list = tuple(nuplan_pickle.detections_to_arrays(d, src, f"extended_detections_tracks[{j}]") for j, d in enumerate(ext))
    lights_raw = data["extended_traffic_light_data"]
    lights = None
    if lights_raw is not None:
        lights = tuple(tuple(nuplan_pickle.traffic_lights_to_list(tl, src, f"extended_traffic_light_data[{j}]"))
                       for j, tl in enumerate(lights_raw))
    return SyntheticScene(dict(meta), tuple(frames), tracks_list, lights, src)


def write_synthetic_scene(path: str | Path, scene_dict: dict) -> None:
    """Atomically write a synthetic scene dict (nuPlan objects are pickled under nuPlan's class paths)."""
    _atomic_pickle(Path(path), scene_dict, nuplan=True)
