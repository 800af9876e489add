"""Sensor blobs of the NAVSIM layout: the eight OpenScene camera poses, JPEG images and binary PCD point clouds.

Camera frames follow OpenCV (x right, y down, z forward); ``sensor2lidar_rotation`` maps camera to lidar axes
(x forward, y left, z up), as in OpenScene's ``cams`` entries. The lidar sits above the rear axle, so
``ego = lidar + LIDAR_TO_EGO_TRANSLATION``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from irlvla_bench.errors import InputError

CAMERA_NAMES = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")
LIDAR_NAME = "MergedPointCloud"
LIDAR_TO_EGO_TRANSLATION = np.array([1.0, 0.0, 1.85])  # lidar origin in the ego (rear-axle) frame [m]
# OpenScene images are 1920 x 1080 with f ~ 1545 px; reduced images keep the field of view (K scaled).
FULL_WIDTH, FULL_HEIGHT, FULL_FOCAL = 1920, 1080, 1545.0
# (yaw of the optical axis in the lidar frame [deg], position in the lidar frame [m])
_RIG = {
    "CAM_F0": (0.0, (0.6, 0.0, -0.35)),
    "CAM_L0": (55.0, (0.5, 0.45, -0.35)),
    "CAM_L1": (110.0, (0.0, 0.85, -0.4)),
    "CAM_L2": (150.0, (-0.8, 0.6, -0.35)),
    "CAM_R0": (-55.0, (0.5, -0.45, -0.35)),
    "CAM_R1": (-110.0, (0.0, -0.85, -0.4)),
    "CAM_R2": (-150.0, (-0.8, -0.6, -0.35)),
    "CAM_B0": (180.0, (-1.5, 0.0, -0.35)),
}
PCD_FIELDS = ("x", "y", "z", "intensity", "ring", "lidar_info")


@dataclass(frozen=True)
class CameraModel:
    name: str
    width: int
    height: int
    intrinsic: np.ndarray  # (3, 3)
    sensor2lidar_rotation: np.ndarray  # (3, 3) camera axes in the lidar frame (columns)
    sensor2lidar_translation: np.ndarray  # (3,)
    distortion: np.ndarray  # (5,)

    def entry(self, data_path: str) -> dict:
        """The ``cams[<name>]`` dict of a NAVSIM log frame."""
        return {
            "data_path": data_path,
            "sensor2lidar_rotation": self.sensor2lidar_rotation.copy(),
            "sensor2lidar_translation": self.sensor2lidar_translation.copy(),
            "cam_intrinsic": self.intrinsic.copy(),
            "distortion": self.distortion.copy(),
        }

    def rays_ego(self) -> tuple[np.ndarray, np.ndarray]:
        """(origin (3,), unit ray directions (H, W, 3)) in the ego frame, one ray per pixel centre."""
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        pix = np.stack([u, v, np.ones_like(u)], axis=-1)
        d_cam = pix @ np.linalg.inv(self.intrinsic).T
        d = d_cam @ self.sensor2lidar_rotation.T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return self.sensor2lidar_translation + LIDAR_TO_EGO_TRANSLATION, d


def camera_rig(width: int, height: int) -> dict[str, CameraModel]:
    scale = width / FULL_WIDTH
    k = np.array([[FULL_FOCAL * scale, 0.0, width / 2.0], [0.0, FULL_FOCAL * scale, height / 2.0], [0.0, 0.0, 1.0]])
    rig = {}
    for name, (yaw_deg, pos) in _RIG.items():
        yaw = np.deg2rad(yaw_deg)
        x_axis = np.array([np.sin(yaw), -np.cos(yaw), 0.0])  # image right
        y_axis = np.array([0.0, 0.0, -1.0])  # image down
        z_axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])  # optical axis
        rot = np.column_stack([x_axis, y_axis, z_axis])
        rig[name] = CameraModel(name, width, height, k.copy(), rot, np.asarray(pos, dtype=np.float64), np.zeros(5))
    return rig


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 90) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    _atomic_write(Path(path), buffer.getvalue())


def read_image(path: str | Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InputError(str(path), "<file>", f"cannot read image: {exc}") from None


def write_pcd(path: str | Path, points: np.ndarray) -> None:
    """Binary PCD with OpenScene's fields; ``points`` is (N, 6) in the lidar frame."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, len(PCD_FIELDS))
    n = len(points)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(PCD_FIELDS)}\nSIZE {' '.join(['4'] * 6)}\nTYPE {' '.join(['F'] * 6)}\n"
        f"COUNT {' '.join(['1'] * 6)}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\nDATA binary\n"
    )
    _atomic_write(Path(path), header.encode("ascii") + points.tobytes())


def read_pcd(path: str | Path) -> np.ndarray:
    """(len(fields), N) float array, the layout NAVSIM's ``Lidar`` holds (``LidarIndex`` rows)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(str(path), "<file>", f"cannot read point cloud: {exc}") from None
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise InputError(str(path), "header", "truncated PCD header (no DATA line)")
        line = raw[pos:end].decode("ascii", errors="replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *vals = line.split()
        header[key.lower()] = vals
        if key.lower() == "data":
            break
    if header.get("data") != ["binary"]:
        raise InputError(str(path), "DATA", f"expected binary, got {header.get('data')}")
    try:
        fields = header["fields"]
        sizes = [int(s) for s in header["size"]]
        types = header["type"]
        n = int(header["points"][0])
    except (KeyError, ValueError, IndexError) as exc:
        raise InputError(str(path), "header", f"malformed PCD header: {exc}") from None
    kinds = {"F": "f", "I": "i", "U": "u"}
    dtype = np.dtype([(f, f"<{kinds[t]}{s}") for f, t, s in zip(fields, types, sizes)])
    need = dtype.itemsize * n
    if len(raw) - pos < need:
        raise InputError(str(path), "DATA", f"truncated: {need} bytes expected, {len(raw) - pos} present")
    rec = np.frombuffer(raw, dtype=dtype, count=n, offset=pos)
    return np.stack([rec[f].astype(np.float64) for f in fields])
