"""Scene on disk -> ``AgentInput``, the way NAVSIM's ``AgentInput.from_scene_dict_list`` builds it.

Only what the agent's ``SensorConfig`` asks for is read from disk (images are the expensive part), so an
ego-status agent never touches the sensor blobs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.base import AgentInput, CameraImage, EgoStatus, SensorConfig
from irlvla_bench.caching.scene import SceneData
from irlvla_bench.errors import InputError
from irlvla_bench.io.navsim_logs import LogFrame
from irlvla_bench.io.sensors import read_image, read_pcd


def relative_pose(origin: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """``pose`` (global x, y, heading) in the frame of ``origin``."""
    c, s = np.cos(origin[2]), np.sin(origin[2])
    dx, dy = pose[0] - origin[0], pose[1] - origin[1]
    heading = np.arctan2(np.sin(pose[2] - origin[2]), np.cos(pose[2] - origin[2]))
    return np.array([c * dx + s * dy, -s * dx + c * dy, heading])


def _camera(frame: LogFrame, name: str, sensor_root: Path, source: str) -> CameraImage:
    cams = frame.cams or {}
    entry = cams.get(name, cams.get(name.lower()))
    if not entry or "data_path" not in entry:
        raise InputError(source, f"{frame.token}.cams.{name}.data_path", "camera requested but not in the log")
    path = sensor_root / entry["data_path"]
    if not path.is_file():
        raise InputError(str(path), f"{frame.token}.cams.{name}", "image file missing")

    def matrix(key: str, shape: tuple[int, ...]) -> np.ndarray:
        if key not in entry:
            raise InputError(source, f"{frame.token}.cams.{name}.{key}", "missing key")
        value = np.asarray(entry[key], dtype=np.float64)
        if value.shape != shape:
            raise InputError(source, f"{frame.token}.cams.{name}.{key}", f"expected shape {shape}, got {value.shape}")
        return value

    return CameraImage(
        name=name,
        image=read_image(path),
        intrinsic=matrix("cam_intrinsic", (3, 3)),
        sensor2lidar_rotation=matrix("sensor2lidar_rotation", (3, 3)),
        sensor2lidar_translation=matrix("sensor2lidar_translation", (3,)),
        distortion=np.asarray(entry.get("distortion", np.zeros(5)), dtype=np.float64),
    )


def _lidar(frame: LogFrame, sensor_root: Path, source: str) -> np.ndarray:
    if not frame.lidar_path or frame.lidar_path == "None":
        raise InputError(source, f"{frame.token}.lidar_path", "LiDAR requested but the frame has none")
    path = sensor_root / frame.lidar_path
    if not path.is_file():
        raise InputError(str(path), f"{frame.token}.lidar_path", "point cloud file missing")
    return read_pcd(path)


def build_agent_input(scene: SceneData, sensors: SensorConfig, sensor_root: str | Path | None = None, *,
                      privileged=None) -> AgentInput:
    """The agent's view of ``scene``'s current frame: ``sensors.history_frames`` ego statuses ending at the
    current frame, plus the requested sensors of ``sensors.frames_with_sensors``."""
    history = scene.frames[:scene.num_history]
    if len(history) < sensors.history_frames:
        raise InputError(scene.source, "num_history_frames",
                         f"agent needs {sensors.history_frames} history frames, the scene has {len(history)}")
    frames = history[len(history) - sensors.history_frames:]
    origin = frames[-1].ego_pose
    statuses = tuple(
        EgoStatus(
            pose=relative_pose(origin, f.ego_pose),
            velocity=np.asarray(f.ego_velocity, dtype=np.float64),
            acceleration=np.asarray(f.ego_acceleration, dtype=np.float64),
            driving_command=np.asarray(f.driving_command, dtype=np.float64),
        )
        for f in frames
    )
    cameras: list[dict[str, CameraImage]] = [{} for _ in frames]
    lidars: list[np.ndarray | None] = [None for _ in frames]
    if sensors.uses_sensors:
        if sensor_root is None:
            raise ValueError(f"{scene.token}: the agent requests sensors but no sensor folder was given")
        root = Path(sensor_root)
        for index in sensors.frames_with_sensors:
            frame = frames[index]
            cameras[index] = {name: _camera(frame, name, root, scene.source) for name in sensors.cameras}
            if sensors.lidar:
                lidars[index] = _lidar(frame, root, scene.source)
    return AgentInput(token=scene.token, ego_statuses=statuses, cameras=tuple(cameras), lidars=tuple(lidars),
                      privileged=privileged)
