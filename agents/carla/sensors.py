"""Bench2Drive's sensor rig, the leaderboard's sensor rules, and parsing of ``run_step``'s ``input_data``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

CAMERA_IDS: tuple[str, ...] = ("CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
                               "CAM_BACK_RIGHT")
IMU_ID, GNSS_ID, SPEED_ID = "IMU", "GPS", "SPEED"


def _camera(sid: str, x: float, y: float, yaw: float, fov: float, width: int, height: int) -> dict[str, Any]:
    return {"type": "sensor.camera.rgb", "x": x, "y": y, "z": 1.60, "roll": 0.0, "pitch": 0.0, "yaw": yaw,
            "width": width, "height": height, "fov": fov, "id": sid}


def bench2drive_rig(width: int = 1600, height: int = 900, include_bev: bool = False) -> list[dict[str, Any]]:
    """Bench2DriveZoo's UniAD/VAD rig: 6 cameras at 1.60 m, IMU and GNSS at (-1.4, 0, 0), 20 Hz speedometer.

    ``include_bev`` adds the Zoo's 512x512 top-down camera at 50 m (allowed only when SAVE_PATH is set).
    """
    rig = [
        _camera("CAM_FRONT", 0.80, 0.0, 0.0, 70, width, height),
        _camera("CAM_FRONT_LEFT", 0.27, -0.55, -55.0, 70, width, height),
        _camera("CAM_FRONT_RIGHT", 0.27, 0.55, 55.0, 70, width, height),
        _camera("CAM_BACK", -2.0, 0.0, 180.0, 110, width, height),
        _camera("CAM_BACK_LEFT", -0.32, -0.55, -110.0, 70, width, height),
        _camera("CAM_BACK_RIGHT", -0.32, 0.55, 110.0, 70, width, height),
        {"type": "sensor.other.imu", "x": -1.4, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0,
         "sensor_tick": 0.05, "id": IMU_ID},
        {"type": "sensor.other.gnss", "x": -1.4, "y": 0.0, "z": 0.0, "roll": 0.0, "pitch": 0.0, "yaw": 0.0,
         "sensor_tick": 0.01, "id": GNSS_ID},
        {"type": "sensor.speedometer", "reading_frequency": 20, "id": SPEED_ID},
    ]
    if include_bev:
        rig.append({"type": "sensor.camera.rgb", "x": 0.0, "y": 0.0, "z": 50.0, "roll": 0.0, "pitch": -90.0,
                    "yaw": 0.0, "width": 512, "height": 512, "fov": 50.0, "id": "bev"})
    return rig


# leaderboard/autoagents/agent_wrapper.py (SENSORS track).
SENSOR_LIMITS: Mapping[str, int] = {
    "sensor.camera.rgb": 8, "sensor.lidar.ray_cast": 2, "sensor.other.radar": 4, "sensor.other.gnss": 1,
    "sensor.other.imu": 1, "sensor.opendrive_map": 1, "sensor.speedometer": 1,
}
MAX_MOUNT_RADIUS_M = 3.0
MAX_MOUNT_RADIUS_SAVE_PATH_M = 100.0  # Bench2Drive relaxes it when SAVE_PATH is set (for the bev camera)


class SensorConfigurationInvalid(ValueError):
    pass


def validate_sensor_configuration(sensors: Sequence[Mapping[str, Any]], save_path_set: bool = False) -> None:
    """The leaderboard's checks for the SENSORS track, raising SensorConfigurationInvalid like it does."""
    radius = MAX_MOUNT_RADIUS_SAVE_PATH_M if save_path_set else MAX_MOUNT_RADIUS_M
    seen: set[str] = set()
    counts: Counter[str] = Counter()
    for s in sensors:
        sid, stype = s.get("id"), s.get("type")
        if not sid or not stype:
            raise SensorConfigurationInvalid(f"sensor without id/type: {dict(s)}")
        if sid in seen:
            raise SensorConfigurationInvalid(f"Duplicated sensor tag [{sid}]")
        seen.add(sid)
        if stype.startswith("sensor.opendrive_map"):
            raise SensorConfigurationInvalid("Illegal sensor 'sensor.opendrive_map' used for Track [SENSORS]!")
        if stype not in SENSOR_LIMITS:
            raise SensorConfigurationInvalid(f"Illegal sensor '{stype}' used for Track [SENSORS]!")
        if all(k in s for k in ("x", "y", "z")) and math.sqrt(s["x"] ** 2 + s["y"] ** 2 + s["z"] ** 2) > radius:
            raise SensorConfigurationInvalid(
                f"Illegal sensor extrinsics used for sensor '{sid}'. Max allowed radius is {radius}m")
        counts[stype] += 1
    for stype, n in counts.items():
        if n > SENSOR_LIMITS[stype]:
            raise SensorConfigurationInvalid(
                f"Too many {stype} used! Maximum number allowed is {SENSOR_LIMITS[stype]}, but {n} were requested.")


class SensorDataInvalid(ValueError):
    pass


@dataclass(frozen=True)
class SensorFrame:
    frame: int
    cameras: Mapping[str, np.ndarray]  # RGB uint8 (H, W, 3)
    imu: np.ndarray  # (7,) ax, ay, az [m/s^2], gx, gy, gz [rad/s] (CARLA vehicle frame), compass [rad]
    gnss: np.ndarray  # (3,) lat, lon, alt
    speed: float  # forward speed [m/s]


def _payload(input_data: Mapping[str, Any], sid: str) -> tuple[int, Any]:
    if sid not in input_data:
        raise SensorDataInvalid(f"no data for sensor {sid!r} (have {sorted(input_data)})")
    item = input_data[sid]
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise SensorDataInvalid(f"{sid}: expected (frame, data), got {type(item).__name__}")
    return int(item[0]), item[1]


def parse_sensor_data(input_data: Mapping[str, Any], rig: Sequence[Mapping[str, Any]]) -> SensorFrame:
    """Check every rig sensor delivered well-formed data and convert it (cameras BGRA -> RGB)."""
    cameras: dict[str, np.ndarray] = {}
    frames: list[int] = []
    imu = gnss = None
    speed = None
    for spec in rig:
        sid, stype = spec["id"], spec["type"]
        frame, data = _payload(input_data, sid)
        frames.append(frame)
        if stype == "sensor.camera.rgb":
            arr = np.asarray(data)
            shape = (int(spec["height"]), int(spec["width"]), 4)
            if arr.dtype != np.uint8 or arr.shape != shape:
                raise SensorDataInvalid(f"{sid}: expected BGRA uint8 {shape}, got {arr.dtype} {arr.shape}")
            cameras[sid] = np.ascontiguousarray(arr[:, :, 2::-1])
        elif stype == "sensor.other.imu":
            imu = np.asarray(data, dtype=np.float64)
            if imu.shape != (7,):
                raise SensorDataInvalid(f"{sid}: expected 7 IMU values, got shape {imu.shape}")
        elif stype == "sensor.other.gnss":
            gnss = np.asarray(data, dtype=np.float64)
            if gnss.shape != (3,) or not np.isfinite(gnss).all():
                raise SensorDataInvalid(f"{sid}: expected finite [lat, lon, alt], got {gnss!r}")
        elif stype == "sensor.speedometer":
            if not isinstance(data, Mapping) or "speed" not in data:
                raise SensorDataInvalid(f"{sid}: expected {{'speed': m/s}}, got {data!r}")
            speed = float(data["speed"])
            if not math.isfinite(speed):
                raise SensorDataInvalid(f"{sid}: speed is not finite")
    if imu is None or gnss is None or speed is None:
        raise SensorDataInvalid("the rig needs an IMU, a GNSS and a speedometer")
    return SensorFrame(max(frames), cameras, imu, gnss, speed)
