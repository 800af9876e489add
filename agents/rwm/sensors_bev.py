"""Camera images lifted to the ground plane: the ``sensors`` encoder's BEV input (NumPy, no torch).

Inverse perspective mapping: every BEV cell centre on the ground (z = 0 in the rear-axle frame) is projected
into each camera with its intrinsics and its sensor-to-lidar pose (the lidar sits at
``LIDAR_TO_EGO_TRANSLATION`` above the rear axle with the ego's axes), and takes the colour of the first camera
that sees it. Flat-ground lifting is exact for the road surface (lanes, kerbs, stop lines) and smears whatever
stands on it (cars, pedestrians) along the viewing ray; a light CNN learns from both. Route and command come
from the driving command (the images do not show the route).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agents.base import AgentInput, SensorConfig
from agents.rwm.config import SensorsConfig
from agents.rwm.features import grid_points
from irlvla_bench.io.sensors import LIDAR_TO_EGO_TRANSLATION

CHANNELS = ("red", "green", "blue", "seen")


def lift_images(agent_input: AgentInput, cfg: SensorsConfig) -> np.ndarray:
    """(4, H, W) float32: RGB in [0, 1] of the current frame's cameras on the ground grid, plus a seen mask."""
    points = grid_points(cfg.grid)
    shape = points.shape[:-1]
    ground = np.concatenate([points.reshape(-1, 2), np.zeros((points.shape[0] * points.shape[1], 1))], axis=1)
    colour = np.zeros((ground.shape[0], 3))
    seen = np.zeros(ground.shape[0], dtype=bool)
    cameras = agent_input.cameras[-1]
    for name in cfg.cameras:
        if name not in cameras:
            continue
        cam = cameras[name]
        origin = cam.sensor2lidar_translation + LIDAR_TO_EGO_TRANSLATION
        in_cam = (ground - origin) @ cam.sensor2lidar_rotation  # rows: points in camera axes (R^T p)
        depth = in_cam[:, 2]
        ok = (depth > cfg.min_depth_m) & ~seen
        pixels = in_cam[ok] @ cam.intrinsic.T
        u = pixels[:, 0] / pixels[:, 2]
        v = pixels[:, 1] / pixels[:, 2]
        height, width = cam.image.shape[:2]
        inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
        index = np.flatnonzero(ok)[inside]
        colour[index] = cam.image[v[inside].astype(int), u[inside].astype(int)] / 255.0
        seen[index] = True
    bev = np.concatenate([colour, seen[:, None].astype(np.float64)], axis=1).T.reshape(4, *shape)
    return bev.astype(np.float32)


def sensor_config(cfg: SensorsConfig) -> SensorConfig:
    return SensorConfig(history_frames=4, cameras=tuple(cfg.cameras))


def load_agent_inputs(data_root: str | Path, split: str, tokens: set[str] | None, cfg: SensorsConfig):
    """Yield ``(token, AgentInput)`` with the current frame's cameras for the scenes of a split."""
    from agents.inputs import build_agent_input
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.io.splits import dataset_paths, list_scenes, load_split

    spec = load_split(split, data_root)
    paths = dataset_paths(data_root, spec)
    listing = list_scenes(data_root, spec)
    for ref in listing.scenes:
        if tokens is not None and ref.token not in tokens:
            continue
        scene = load_scene(ref)
        root = paths.synthetic_sensor_path if ref.kind == "synthetic" else paths.original_sensor_path
        yield ref.token, build_agent_input(scene, sensor_config(cfg), root)
