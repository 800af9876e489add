"""Inputs and labels of the IL VLA policy, and the on-disk cache of preprocessed samples.

Inputs come from an ``AgentInput`` through :func:`input_arrays` for training and inference alike (the training
set is built with ``agents.inputs.build_agent_input``), so the two cannot drift apart:

* ``images`` (N, 3, H, W) uint8: each configured camera, top ``crop_top`` of the rows removed (sky), resized;
* ``intrinsics`` (N, 3, 3) of the cropped, resized image; ``cam2ego`` (N, 4, 4): camera -> ego rear-axle frame
  (the lidar frame is the ego frame shifted by ``LIDAR_TO_EGO_TRANSLATION``);
* ``ego`` (F,): per history frame pose / 10 m, heading, velocity / 10 m/s, acceleration / 3 m/s^2, then the
  current driving command (fixed scales, so no dataset statistics have to travel with a checkpoint).

Labels, all in the current ego frame (x forward, y left): the 8 future poses; BEV segmentation of
``SEG_CLASSES`` rasterised from the GPKG map (drivable area = roadblocks, roadblock connectors, intersections,
car parks; lanes = lane and connector centerlines within 3/4 of a cell; crossings = crosswalks) and from the
frame's boxes (vehicles = vehicle and bicycle, pedestrians, static objects = cones, barriers, signs, generic);
detection targets (nearest ``det_queries`` boxes inside the grid); lane centerline polylines for the map head;
the derived speed / path commands (``commands.py``).

The cache is one ``.npz`` per sample (written atomically, so an interrupted build resumes) plus ``index.json``
(written last) under ``<cache_dir>/<split>-<key>``, the key hashing the data root, the split and every config
field that changes a sample.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from agents.base import AgentInput, SensorConfig
from agents.inputs import build_agent_input, relative_pose
from agents.vla.commands import derive_commands
from agents.vla.config import CATEGORY_TO_DET, SEG_CLASSES, VLAConfig
from irlvla_bench.caching.scene import SceneData, load_scene
from irlvla_bench.io.atomic import atomic_path, write_json_atomic
from irlvla_bench.io.sensors import LIDAR_TO_EGO_TRANSLATION

CACHE_VERSION = 1
POSE_SCALE = np.array([10.0, 10.0, 1.0])
VEL_SCALE = 10.0
ACC_SCALE = 3.0
SEG_VEHICLES = ("vehicle", "bicycle")
SEG_PEDESTRIANS = ("pedestrian",)
SEG_STATIC = ("traffic_cone", "barrier", "czone_sign", "generic_object")
DRIVABLE_LAYERS = ("roadblock", "roadblock_connector", "intersection", "carpark_area")
MIN_MAP_LENGTH = 2.0  # m: shorter centerline pieces inside the grid are not map targets


def sensor_config(config: VLAConfig) -> SensorConfig:
    return SensorConfig(history_frames=config.history_frames, cameras=tuple(config.image.cameras))


def ego_feature_size(config: VLAConfig) -> int:
    return config.history_frames * 7 + 4


def ego_vector(agent_input: AgentInput, history_frames: int) -> np.ndarray:
    statuses = agent_input.ego_statuses[-history_frames:]
    if len(statuses) != history_frames:
        raise ValueError(f"{agent_input.token}: need {history_frames} ego statuses, got {len(statuses)}")
    parts = [np.concatenate([np.asarray(s.pose) / POSE_SCALE, np.asarray(s.velocity) / VEL_SCALE,
                             np.asarray(s.acceleration) / ACC_SCALE]) for s in statuses]
    parts.append(np.asarray(statuses[-1].driving_command, dtype=np.float64))
    return np.concatenate(parts).astype(np.float32)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if image.shape[0] == height and image.shape[1] == width:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def camera_arrays(agent_input: AgentInput, config: VLAConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, 3, H, W) uint8, intrinsics (N, 3, 3), cam2ego (N, 4, 4)) of the current frame's cameras."""
    img_cfg = config.image
    cams = agent_input.cameras[-1]
    images, intrinsics, extrinsics = [], [], []
    for name in img_cfg.cameras:
        if name not in cams:
            raise ValueError(f"{agent_input.token}: camera {name} missing from the agent input")
        cam = cams[name]
        src_h, src_w = cam.image.shape[:2]
        top = int(round(img_cfg.crop_top * src_h))
        crop = cam.image[top:]
        sy, sx = img_cfg.height / crop.shape[0], img_cfg.width / src_w
        images.append(_resize(np.ascontiguousarray(crop), img_cfg.height, img_cfg.width).transpose(2, 0, 1))
        k = np.asarray(cam.intrinsic, dtype=np.float64).copy()
        k[0, :] *= sx
        k[1, 2] -= top
        k[1, :] *= sy
        intrinsics.append(k)
        t = np.eye(4)
        t[:3, :3] = cam.sensor2lidar_rotation
        t[:3, 3] = np.asarray(cam.sensor2lidar_translation) + LIDAR_TO_EGO_TRANSLATION
        extrinsics.append(t)
    return (np.stack(images).astype(np.uint8), np.stack(intrinsics).astype(np.float32),
            np.stack(extrinsics).astype(np.float32))


def input_arrays(agent_input: AgentInput, config: VLAConfig) -> dict[str, np.ndarray]:
    images, intrinsics, cam2ego = camera_arrays(agent_input, config)
    return {"images": images, "intrinsics": intrinsics, "cam2ego": cam2ego,
            "ego": ego_vector(agent_input, config.history_frames)}


# --------------------------------------------------------------------------------------------------------------
# Labels


def future_trajectory(scene: SceneData, num_poses: int = 8) -> np.ndarray | None:
    future = scene.frames[scene.num_history:scene.num_history + num_poses]
    if len(future) < num_poses:
        return None
    origin = scene.current.ego_pose
    return np.stack([relative_pose(origin, f.ego_pose) for f in future]).astype(np.float32)


def cell_centres(config: VLAConfig) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame (x, y) of every BEV cell centre, each (X, Y)."""
    bev = config.bev
    nx, ny = bev.grid_shape()
    xs = bev.x_range[0] + (np.arange(nx) + 0.5) * bev.resolution
    ys = bev.y_range[0] + (np.arange(ny) + 0.5) * bev.resolution
    return np.meshgrid(xs, ys, indexing="ij")


def _to_ego(origin: np.ndarray, xy: np.ndarray) -> np.ndarray:
    c, s = np.cos(origin[2]), np.sin(origin[2])
    d = np.asarray(xy, dtype=np.float64)[..., :2] - origin[:2]
    return np.stack([c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]], axis=-1)


def _to_global(origin: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(origin[2]), np.sin(origin[2])
    return origin[0] + c * x - s * y, origin[1] + s * x + c * y


def _boxes_ego(scene: SceneData) -> tuple[np.ndarray, tuple[str, ...]]:
    """(N, 5) x, y, heading, length, width of the current frame's boxes in the ego frame, and their names."""
    frame = scene.current
    if len(frame.boxes) == 0:
        return np.zeros((0, 5)), ()
    xy = _to_ego(frame.ego_pose, frame.boxes[:, :2])
    heading = np.arctan2(np.sin(frame.boxes[:, 2] - frame.ego_pose[2]), np.cos(frame.boxes[:, 2] - frame.ego_pose[2]))
    return np.column_stack([xy, heading, frame.boxes[:, 3], frame.boxes[:, 4]]), tuple(frame.names)


def _in_boxes(x: np.ndarray, y: np.ndarray, boxes: np.ndarray, min_size: float) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(x.shape, dtype=bool)
    dx = x[None] - boxes[:, 0, None, None]
    dy = y[None] - boxes[:, 1, None, None]
    c, s = np.cos(boxes[:, 2])[:, None, None], np.sin(boxes[:, 2])[:, None, None]
    lon, lat = c * dx + s * dy, -s * dx + c * dy
    # Boxes smaller than a cell would fall between cell centres: they cover at least the cell they are in.
    half_l = np.maximum(boxes[:, 3], min_size)[:, None, None] / 2
    half_w = np.maximum(boxes[:, 4], min_size)[:, None, None] / 2
    return ((np.abs(lon) <= half_l) & (np.abs(lat) <= half_w)).any(axis=0)


def segmentation_labels(scene: SceneData, nmap, config: VLAConfig) -> np.ndarray:
    """(len(SEG_CLASSES), X, Y) uint8 multi-label BEV segmentation."""
    import shapely

    x, y = cell_centres(config)
    origin = scene.current.ego_pose
    gx, gy = _to_global(origin, x, y)
    bev = config.bev
    radius = float(np.hypot(max(map(abs, bev.x_range)), max(map(abs, bev.y_range)))) + 1.0
    out = np.zeros((len(SEG_CLASSES),) + x.shape, dtype=bool)

    def fill(channel: int, layers: Iterable[str]) -> None:
        layers = [name for name in layers if name in nmap.layers]
        for layer, ids in nmap.proximal(origin[0], origin[1], radius, layers).items():
            for obj_id in ids:
                out[channel] |= shapely.contains_xy(nmap.polygon(layer, obj_id), gx, gy)

    fill(SEG_CLASSES.index("drivable_area"), DRIVABLE_LAYERS)
    fill(SEG_CLASSES.index("crossings"), ("crosswalk",))
    lanes = nmap.proximal(origin[0], origin[1], radius, ("lane", "lane_connector"))
    lines = [shapely.LineString(nmap.lanes[i].baseline[:, :2]) for ids in lanes.values() for i in ids]
    if lines:
        band = shapely.union_all(lines).buffer(max(0.75 * bev.resolution, 0.5))
        out[SEG_CLASSES.index("lanes")] = shapely.contains_xy(band, gx, gy)
    boxes, names = _boxes_ego(scene)
    for channel, kinds in (("vehicles", SEG_VEHICLES), ("pedestrians", SEG_PEDESTRIANS),
                           ("static_objects", SEG_STATIC)):
        keep = np.array([n in kinds for n in names], dtype=bool)
        out[SEG_CLASSES.index(channel)] = _in_boxes(x, y, boxes[keep] if len(boxes) else boxes, bev.resolution)
    return out.astype(np.uint8)


def _inside(xy: np.ndarray, config: VLAConfig) -> np.ndarray:
    bev = config.bev
    return ((xy[..., 0] >= bev.x_range[0]) & (xy[..., 0] < bev.x_range[1])
            & (xy[..., 1] >= bev.y_range[0]) & (xy[..., 1] < bev.y_range[1]))


def detection_targets(scene: SceneData, config: VLAConfig) -> tuple[np.ndarray, np.ndarray]:
    """(Q, 5) boxes x, y, heading, length, width and (Q,) class (-1: padding), nearest first."""
    q = config.heads.det_queries
    boxes, names = _boxes_ego(scene)
    out_boxes = np.zeros((q, 5), dtype=np.float32)
    out_cls = np.full(q, -1, dtype=np.int64)
    if len(boxes):
        keep = np.array([n in CATEGORY_TO_DET for n in names]) & _inside(boxes[:, :2], config)
        boxes = boxes[keep]
        classes = np.array([CATEGORY_TO_DET[n] for n, k in zip(names, keep) if k], dtype=np.int64)
        order = np.argsort(np.hypot(boxes[:, 0], boxes[:, 1]), kind="stable")[:q]
        out_boxes[:len(order)] = boxes[order]
        out_cls[:len(order)] = classes[order]
    return out_boxes, out_cls


def _resample(points: np.ndarray, count: int) -> np.ndarray:
    seg = np.hypot(*np.diff(points, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    target = np.linspace(0.0, s[-1], count)
    return np.column_stack([np.interp(target, s, points[:, 0]), np.interp(target, s, points[:, 1])])


def map_targets(scene: SceneData, nmap, config: VLAConfig) -> tuple[np.ndarray, np.ndarray]:
    """(M, P, 2) lane centerline polylines inside the grid (the longest inside run of each lane or connector,
    resampled to P points in driving direction), nearest first, and (M,) validity."""
    m, p = config.heads.map_queries, config.heads.map_points
    bev = config.bev
    origin = scene.current.ego_pose
    radius = float(np.hypot(max(map(abs, bev.x_range)), max(map(abs, bev.y_range)))) + 1.0
    found = nmap.proximal(origin[0], origin[1], radius, ("lane", "lane_connector"))
    polylines, distances = [], []
    for ids in found.values():
        for lane_id in ids:
            pts = _to_ego(origin, nmap.lanes[lane_id].baseline[:, :2])
            inside = _inside(pts, config)
            if not inside.any():
                continue
            # Longest run of consecutive inside vertices.
            runs, start = [], None
            for i, flag in enumerate(np.append(inside, False)):
                if flag and start is None:
                    start = i
                elif not flag and start is not None:
                    runs.append((start, i))
                    start = None
            a, b = max(runs, key=lambda r: r[1] - r[0])
            piece = pts[a:b]
            if len(piece) < 2 or np.hypot(*np.diff(piece, axis=0).T).sum() < MIN_MAP_LENGTH:
                continue
            polylines.append(_resample(piece, p))
            distances.append(float(np.hypot(piece[:, 0], piece[:, 1]).min()))
    out = np.zeros((m, p, 2), dtype=np.float32)
    valid = np.zeros(m, dtype=bool)
    for slot, i in enumerate(np.argsort(distances, kind="stable")[:m]):
        out[slot] = polylines[i]
        valid[slot] = True
    return out, valid


def sample_arrays(scene: SceneData, sensor_root: str | Path, nmap, config: VLAConfig) -> dict[str, np.ndarray] | None:
    """Inputs and labels of one scene; None when the scene has fewer than 8 future frames."""
    trajectory = future_trajectory(scene, config.planner.num_poses)
    if trajectory is None or scene.num_history < config.history_frames:
        return None
    agent_input = build_agent_input(scene, sensor_config(config), sensor_root)
    sample = input_arrays(agent_input, config)
    speed, path = derive_commands(trajectory, scene.current.ego_velocity)
    det_boxes, det_cls = detection_targets(scene, config)
    map_pts, map_valid = map_targets(scene, nmap, config)
    sample.update(trajectory=trajectory, seg=segmentation_labels(scene, nmap, config), det_boxes=det_boxes,
                  det_classes=det_cls, map_points=map_pts, map_valid=map_valid,
                  speed_command=np.int64(speed), path_command=np.int64(path))
    return sample


# --------------------------------------------------------------------------------------------------------------
# Cache

# Config parts that change a cached sample (the model and training parts do not).
def cache_key(data_root: str | Path, split: str, config: VLAConfig) -> str:
    relevant = {"version": CACHE_VERSION, "root": str(Path(data_root).resolve()), "split": split,
                "image": {k: v for k, v in asdict(config.image).items() if k not in ("mean", "std")},
                "grid": [config.bev.x_range, config.bev.y_range, config.bev.resolution],
                "history": config.history_frames,
                "det_queries": config.heads.det_queries, "map": [config.heads.map_queries, config.heads.map_points],
                "poses": config.planner.num_poses}
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]


def split_scenes(data_root: str | Path, split: str):
    """(listing, [(SceneRef, sensor root)]) of a split; synthetic scenes read their own sensor folder."""
    from irlvla_bench.io.splits import list_scenes, load_split

    listing = list_scenes(data_root, load_split(split, data_root))
    paths = listing.paths
    out = []
    for ref in listing.scenes:
        root = paths.synthetic_sensor_path if ref.kind == "synthetic" else paths.original_sensor_path
        out.append((ref, root))
    return listing, out


def build_cache(data_root: str | Path, split: str, config: VLAConfig, cache_dir: str | Path, *,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Preprocess every scene of ``split`` (with 8 future frames) into ``<cache_dir>/<split>-<key>``; resumable.
    Returns the folder; ``index.json`` in it lists the samples in split order."""
    from irlvla_bench.io.nuplan_map import load_map

    folder = Path(cache_dir) / f"{Path(split).stem}-{cache_key(data_root, split, config)}"
    index_path = folder / "index.json"
    if index_path.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    listing, scenes = split_scenes(data_root, split)
    entries, skipped = [], []
    for i, (ref, sensor_root) in enumerate(scenes):
        path = folder / f"{ref.token}.npz"
        if path.exists():
            entries.append({"token": ref.token, "file": path.name})
        else:
            scene = load_scene(ref)
            sample = sample_arrays(scene, sensor_root, load_map(listing.paths.maps_root, scene.map_name), config)
            if sample is None:
                skipped.append(ref.token)
            else:
                with atomic_path(path) as tmp:
                    with open(tmp, "wb") as handle:
                        np.savez(handle, **sample)
                entries.append({"token": ref.token, "file": path.name})
        if progress is not None:
            progress(i + 1, len(scenes))
    if not entries:
        raise ValueError(f"split {split!r} of {data_root} has no scene with 8 future frames to train on")
    write_json_atomic(index_path, {"version": CACHE_VERSION, "split": split, "root": str(data_root),
                                   "config": config.name, "samples": entries, "skipped": skipped}, indent=1)
    return folder


class SampleStore:
    """The cached samples of one split, stacked in memory (``arrays[name][i]``)."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        index = json.loads((folder / "index.json").read_text())
        self.tokens = [e["token"] for e in index["samples"]]
        stacks: dict[str, list[np.ndarray]] = {}
        for entry in index["samples"]:
            with np.load(folder / entry["file"]) as data:
                for key in data.files:
                    stacks.setdefault(key, []).append(data[key])
        self.arrays = {k: np.stack(v) for k, v in stacks.items()}

    def __len__(self) -> int:
        return len(self.tokens)

    def batch(self, indices: np.ndarray | list[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        return {k: v[idx] for k, v in self.arrays.items()}


def trajectory_anchors(trajectories: np.ndarray, k: int, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """K-means (k-means++ init, seeded) over flattened (8, 3) training trajectories -> (k, 8, 3) anchors.
    Headings are weighted by 10 m / rad in the distance so that turns separate from straight driving."""
    data = np.asarray(trajectories, dtype=np.float64).reshape(len(trajectories), -1, 3)
    if len(data) < k:
        raise ValueError(f"{len(data)} training trajectories cannot give {k} anchors")
    weight = np.array([1.0, 1.0, 10.0])
    flat = (data * weight).reshape(len(data), -1)
    rng = np.random.default_rng(seed)
    centres = [flat[rng.integers(len(flat))]]
    for _ in range(1, k):
        d2 = np.min([((flat - c) ** 2).sum(1) for c in centres], axis=0)
        total = d2.sum()
        centres.append(flat[rng.choice(len(flat), p=d2 / total)] if total > 0 else flat[rng.integers(len(flat))])
    centres = np.stack(centres)
    for _ in range(iterations):
        assign = ((flat[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
        new = np.stack([flat[assign == j].mean(0) if np.any(assign == j) else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return (centres.reshape(k, -1, 3) / weight).astype(np.float32)


__all__ = ["SampleStore", "build_cache", "cache_key", "input_arrays", "sample_arrays", "sensor_config",
           "trajectory_anchors"]
