"""Write a complete NAVSIM-layout dataset from the procedural world: nuPlan maps, 2 Hz log pickles, camera and
lidar blobs, a navtest-style one-stage split and a navhard-style two-stage split (first-stage logs, synthetic
second-stage scenes from perturbed ego poses, ``reactive_all_mapping``). Seeded and deterministic: the same
``(seed, logs, config)`` writes the same bytes.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from irlvla_bench.io import nuplan_pickle
from irlvla_bench.io.navsim_logs import global_to_ego, write_log, write_synthetic_scene
from irlvla_bench.io.nuplan_map import write_map
from irlvla_bench.io.sensors import CAMERA_NAMES, LIDAR_NAME, LIDAR_TO_EGO_TRANSLATION, camera_rig, write_jpeg, write_pcd
from irlvla_bench.io.splits import SceneFilterSpec, SplitSpec, write_split
from irlvla_bench.world.config import WorldConfig, preset
from irlvla_bench.world.geometry import quaternion_from_yaw, wrap
from irlvla_bench.world.render import MapRaster, render_camera, render_lidar
from irlvla_bench.world.roadnet import RoadNetwork, build_network
from irlvla_bench.world.traffic import DT, Snapshot, TrafficSim

FRAME_DT_US = 500_000
STEPS_PER_FRAME = 5
BASE_TIMESTAMP_US = 1_700_000_000_000_000
ONE_STAGE_SPLIT = "navtest"
TWO_STAGE_SPLIT = "navhard_two_stage"
TRAIN_SPLIT = "navtrain"


@dataclass(frozen=True)
class WorldSummary:
    root: str
    seed: int
    logs: tuple[str, ...]
    frames: int
    one_stage_scenes: int
    two_stage_mappings: int
    synthetic_scenes: int
    seconds: float


@dataclass
class _LoggedFrame:
    """What the generator keeps of a 2 Hz frame to build synthetic scenes later (global frame)."""

    token: str
    timestamp: int
    snap: Snapshot
    roadblock_ids: list[str]
    lights: list[tuple[int, bool]]
    command: np.ndarray
    speed: float
    accel: float
    yaw_rate: float


class _Tokens:
    """16-hex-digit tokens (17 for synthetic frames) from a seeded stream."""

    def __init__(self, seed: int | list[int]):
        self.rng = np.random.default_rng(seed)

    def __call__(self, digits: int = 16) -> str:
        return "".join("0123456789abcdef"[i] for i in self.rng.integers(0, 16, digits))


def _log_name(seed: int, index: int, n_frames: int) -> str:
    return f"2030.01.{index % 28 + 1:02d}.{seed % 24:02d}.00.00_veh-{seed % 100:02d}_{index * 1000:05d}_{index * 1000 + n_frames:05d}"


def _command(sim: TrafficSim, ego_pose: np.ndarray) -> np.ndarray:
    """OpenScene-style one-hot (left, straight, right, unknown) from the route 20 m ahead, +-2 m lateral."""
    pts = sim.ego_path_ahead(30.0)
    d = np.hypot(pts[:, 0] - ego_pose[0], pts[:, 1] - ego_pose[1])
    idx = int(np.argmin(np.abs(d - 20.0)))
    c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
    dx, dy = pts[idx, 0] - ego_pose[0], pts[idx, 1] - ego_pose[1]
    lateral = -s * dx + c * dy
    cmd = np.zeros(4, dtype=np.int64)
    cmd[0 if lateral > 2.0 else 2 if lateral < -2.0 else 1] = 1
    return cmd


def _route(blocks: list[str], start: int, net: RoadNetwork, mode: str) -> list[str]:
    route: list[str] = []
    for b in blocks[start:]:
        if b in route:
            break  # a revisited block would be collapsed by NAVSIM's de-duplication; cut the loop
        route.append(b)
    if mode == "no_connectors":
        route = [b for b in route if not net.blocks[b]["is_connector"]] or route
    elif mode == "ahead" and len(route) > 2:
        route = route[1:]
    return route


def _frame_dict(lf: _LoggedFrame, log_name: str, log_token: str, index: int, map_location: str, tokens: list[str],
                rig, range_m: float) -> dict:
    snap = lf.snap
    ego = snap.ego
    near = np.hypot(snap.boxes[:, 0] - ego[0], snap.boxes[:, 1] - ego[1]) < range_m if len(snap.boxes) else np.zeros(0, bool)
    boxes, vel = global_to_ego(ego, snap.boxes[near], snap.velocities[near])
    names = [k for k, m in zip(snap.kinds, near) if m]
    tracks = [t for t, m in zip(snap.tokens, near) if m]
    instance = [_instance_token(lf.token, t) for t in tracks]
    ego2global = np.eye(4)
    c, s = np.cos(ego[2]), np.sin(ego[2])
    ego2global[:2, :2] = [[c, -s], [s, c]]
    ego2global[:2, 3] = ego[:2]
    lidar2ego = np.eye(4)
    lidar2ego[:3, 3] = LIDAR_TO_EGO_TRANSLATION
    cams = {name: rig[name].entry(f"{log_name}/{name}/{lf.token}.jpg") if rig else {} for name in CAMERA_NAMES}
    return {
        "token": lf.token,
        "frame_idx": index,
        "timestamp": lf.timestamp,
        "log_name": log_name,
        "log_token": log_token,
        "scene_name": f"{log_token}-{index // 40:03d}",
        "scene_token": log_token,
        "map_location": map_location,
        "vehicle_name": "synthetic",
        "sample_prev": tokens[index - 1] if index > 0 else None,
        "sample_next": tokens[index + 1] if index + 1 < len(tokens) else None,
        "roadblock_ids": list(lf.roadblock_ids),
        "traffic_lights": [(int(cid), bool(red)) for cid, red in lf.lights],
        "ego2global_translation": np.array([ego[0], ego[1], 0.0]),
        "ego2global_rotation": quaternion_from_yaw(float(ego[2])),
        "ego2global": ego2global,
        "lidar2ego_translation": LIDAR_TO_EGO_TRANSLATION.copy(),
        "lidar2ego_rotation": np.array([1.0, 0.0, 0.0, 0.0]),
        "lidar2ego": lidar2ego,
        "lidar2global": ego2global @ lidar2ego,
        "ego_dynamic_state": [float(lf.speed), 0.0, float(lf.accel), float(lf.speed * lf.yaw_rate)],
        "driving_command": lf.command.copy(),
        "anns": {
            "gt_boxes": boxes,
            "gt_names": names,
            "gt_velocity_3d": vel,
            "instance_tokens": instance,
            "track_tokens": tracks,
        },
        "cams": cams,
        "lidar_path": f"{log_name}/{LIDAR_NAME}/{lf.token}.pcd",
    }


def _instance_token(frame_token: str, track_token: str) -> str:
    # Deterministic per (frame, track) without a second random stream.
    return format(int(frame_token[:16], 16) ^ int(track_token[:16], 16), "016x")


def _write_sensors(out_dir: Path, rel_prefix: str, token: str, cfg: WorldConfig, raster: MapRaster, rig, ego: np.ndarray,
                   snap: Snapshot, red_lanes: set[str]) -> None:
    if cfg.cameras:
        for name, cam in rig.items():
            img = render_camera(raster, cam, ego, snap.boxes, snap.kinds, red_lanes, cfg.sensors.render_range)
            write_jpeg(out_dir / rel_prefix / name / f"{token}.jpg", img, cfg.sensors.jpeg_quality)
    if cfg.sensors.lidar:
        pts = render_lidar(raster, ego, snap.boxes, cfg.sensors.lidar_beams, cfg.sensors.lidar_azimuths)
        write_pcd(out_dir / rel_prefix / LIDAR_NAME / f"{token}.pcd", pts)


def _red_lanes(net: RoadNetwork, red: set[str]) -> set[str]:
    return {net.lanes[c].predecessors[0] for c in red}


def simulate_log(net: RoadNetwork, cfg: WorldConfig, seed: int, index: int) -> tuple[str, list[_LoggedFrame]]:
    """Run one log: warm-up, then 2 Hz key frames of ``cfg.log_duration_s`` (plus a tail for the route)."""
    rng = np.random.default_rng([seed, index, 1])
    tokens = _Tokens([seed, index, 2])
    sim = TrafficSim(net, cfg.traffic, rng, tokens)
    for _ in range(int(round(cfg.traffic.warmup_s / DT))):
        sim.step()
    n_frames = int(round(cfg.log_duration_s / 0.5)) + 1
    log_name = _log_name(seed, index, n_frames)
    start_us = BASE_TIMESTAMP_US + (seed % 1000) * 100_000_000_000 + index * 10_000_000_000
    frames: list[_LoggedFrame] = []
    block_index: list[int] = []
    prev_heading = sim.snapshot().ego[2]
    lit = [c for j in net.junctions if j.signalised for cs in j.connectors_by_arm.values() for c in cs]
    for k in range(n_frames):
        if k > 0:
            for _ in range(STEPS_PER_FRAME - 1):
                sim.step()
            prev_heading = sim.snapshot().ego[2]
            sim.step()
        snap = sim.snapshot()
        yaw_rate = float(wrap(snap.ego[2] - prev_heading)) / DT if k > 0 else 0.0
        lights = [(int(c), c in snap.red) for c in lit]
        frames.append(_LoggedFrame(tokens(), start_us + k * FRAME_DT_US, snap, [], lights,
                                   _command(sim, snap.ego), snap.ego_speed, snap.ego_accel, yaw_rate))
        block_index.append(len(sim.ego_blocks) - 1)
    # Let the ego drive on so that every frame's route reaches well beyond the log's end.
    for _ in range(int(12.0 / DT)):
        sim.step()
    blocks = list(sim.ego_blocks)
    for lid in sim.ego().plan:
        b = net.lanes[lid].block_id
        if b != blocks[-1]:
            blocks.append(b)
    mode = ["full", "full", "full", "full", "full", "full", "no_connectors", "no_connectors", "ahead", "full"][
        int(rng.integers(10))]
    for f, bi in zip(frames, block_index):
        f.roadblock_ids = _route(blocks, bi, net, mode)
    return log_name, frames


def _write_log_files(root: Path, data_split: str, log_name: str, frames: list[_LoggedFrame], net: RoadNetwork,
                     cfg: WorldConfig, raster: MapRaster | None, rig) -> list[dict]:
    tokens = [f.token for f in frames]
    log_token = tokens[0][::-1]
    dicts = [_frame_dict(f, log_name, log_token, i, net.location, tokens, rig, cfg.traffic.detection_range)
             for i, f in enumerate(frames)]
    write_log(root / "navsim_logs" / data_split / f"{log_name}.pkl", dicts)
    if raster is not None:
        blobs = root / "sensor_blobs" / data_split
        for f in frames:
            _write_sensors(blobs, log_name, f.token, cfg, raster, rig, f.snap.ego, f.snap, _red_lanes(net, f.snap.red))
    return dicts


def _keep_on_road(net: RoadNetwork, poses: list[np.ndarray], offset: float, dheading: float) -> float:
    """Shrink a lateral perturbation until the displaced ego footprint stays on the drivable area."""
    from irlvla_bench.caching.pdm_closed import ego_polygon

    area = net.drivable.buffer(-0.05)
    for _ in range(4):
        ok = True
        for p in poses:
            normal = np.array([-np.sin(p[2]), np.cos(p[2])])
            q = np.array([p[0] + offset * normal[0], p[1] + offset * normal[1], p[2] + dheading])
            if not area.contains(ego_polygon(q)):
                ok = False
                break
        if ok:
            return offset
        offset *= 0.5
    return 0.0


def _synthetic_scene(net: RoadNetwork, cfg: WorldConfig, log_name: str, frames: list[_LoggedFrame], current: int,
                     offset: float, dheading: float, speed_factor: float, tokens: _Tokens, first_stage_token: str,
                     raster: MapRaster | None, rig, blobs: Path) -> tuple[dict, str, np.ndarray]:
    """A navhard-style second-stage scene whose current frame is ``frames[current]`` with the ego displaced."""
    hist = list(range(current - 3, current + 1))
    syn_tokens = [tokens(17) for _ in hist]
    frame_dicts = []
    pose_now = None
    for k, fi in enumerate(hist):
        lf = frames[fi]
        human = lf.snap.ego
        normal = np.array([-np.sin(human[2]), np.cos(human[2])])
        pose = np.array([human[0] + offset * normal[0], human[1] + offset * normal[1], float(wrap(human[2] + dheading))])
        snap = lf.snap
        near = np.hypot(snap.boxes[:, 0] - pose[0], snap.boxes[:, 1] - pose[1]) < cfg.traffic.detection_range
        boxes, vel = global_to_ego(pose, snap.boxes[near], snap.velocities[near])
        tracks = [t for t, m in zip(snap.tokens, near) if m]
        names = [n for n, m in zip(snap.kinds, near) if m]
        token = syn_tokens[k]
        cams = {name.lower(): rig[name].entry(f"{log_name}/{name}/{token}.jpg") if rig else {} for name in CAMERA_NAMES}
        if raster is not None:
            _write_sensors(blobs, log_name, token, cfg, raster, rig, pose, snap, _red_lanes(net, snap.red))
        frame_dicts.append({
            "token": token,
            "timestamp": lf.timestamp,
            "roadblock_ids": list(lf.roadblock_ids),
            "traffic_lights": [(int(c), bool(r)) for c, r in lf.lights],
            "annotations": {"boxes": boxes, "names": names, "velocity_3d": vel,
                            "instance_tokens": [_instance_token(token[:16], t) for t in tracks], "track_tokens": tracks},
            "ego_status": {"ego_pose": pose.astype(np.float64),
                           "ego_velocity": np.array([lf.speed * speed_factor, 0.0], dtype=np.float32),
                           "ego_acceleration": np.array([lf.accel, lf.speed * lf.yaw_rate], dtype=np.float32),
                           "driving_command": lf.command.copy(), "in_global_frame": True},
            "lidar_path": f"{log_name}/{LIDAR_NAME}/{token}.pcd" if cfg.sensors.lidar else None,
            "camera_dict": cams,
        })
        pose_now = pose
    ext_tracks, ext_lights = [], []
    for j in range(1, 9):
        lf = frames[current + j]
        snap = lf.snap
        ext_tracks.append(nuplan_pickle.detections_tracks(
            snap.tokens, snap.kinds, snap.boxes, snap.velocities,
            [_instance_token(lf.token, t) for t in snap.tokens], lf.timestamp))
        ext_lights.append(nuplan_pickle.traffic_light_statuses(lf.lights, lf.timestamp))
    initial = syn_tokens[-1]
    scene = {
        "scene_metadata": {
            "log_name": log_name, "scene_token": initial, "map_name": net.location, "initial_token": initial,
            "num_history_frames": 4, "num_future_frames": 8,
            "corresponding_original_scene": frames[current].token,
            "corresponding_original_initial_token": first_stage_token,
        },
        "frames": frame_dicts,
        "extended_traffic_light_data": ext_lights,
        "extended_detections_tracks": ext_tracks,
    }
    assert pose_now is not None
    return scene, initial, pose_now


def generate_world(out: str | Path, n_logs: int, seed: int, config: WorldConfig | str = "default", *,
                   train_logs: int = 0, progress: Callable[[str, int, int], None] | None = None,
                   overwrite: bool = False) -> WorldSummary:
    """Generate the dataset under ``out`` (see the module docstring for the layout)."""
    t0 = time.perf_counter()
    cfg = preset(config) if isinstance(config, str) else config
    if n_logs < 1:
        raise ValueError("need at least one log")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} is not empty (use overwrite=True / --overwrite)")
        for sub in ("maps", "navsim_logs", "sensor_blobs", TWO_STAGE_SPLIT, "navsim_config", "world.json"):
            p = root / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    root.mkdir(parents=True, exist_ok=True)
    net = build_network(cfg, np.random.default_rng([seed, 0]))
    write_map(root / "maps", net.location, net.layers)
    want_sensors = cfg.cameras or cfg.sensors.lidar
    raster = MapRaster(net) if want_sensors else None
    rig = camera_rig(cfg.sensors.width, cfg.sensors.height) if cfg.cameras else None

    logs: list[str] = []
    total_frames = 0
    one_stage_tokens: list[str] = []
    mappings: list[tuple[str, str, list[tuple[str, str]]]] = []
    synthetic_tokens: list[str] = []
    attributes: list[dict] = []
    two_stage_logs: list[str] = []
    split_cfg = cfg.splits
    two_dir = root / TWO_STAGE_SPLIT
    n_total = n_logs + train_logs
    for index in range(n_total):
        is_train = index >= n_logs
        data_split = "trainval" if is_train else "test"
        log_name, frames = simulate_log(net, cfg, seed, index)
        if progress:
            progress(log_name, index + 1, n_total)
        dicts = _write_log_files(root, data_split, log_name, frames, net, cfg, raster, rig)
        total_frames += len(frames)
        if is_train:
            continue
        logs.append(log_name)
        # navtest-style scenes: 4 history + 10 future frames, every ``navtest_frame_interval`` frames.
        for start in range(0, len(frames) - 13, split_cfg.navtest_frame_interval):
            if frames[start + 3].roadblock_ids:
                one_stage_tokens.append(frames[start + 3].token)
        # navhard-style mappings need 4 history, 8 first-stage and 8 second-stage frames after the prev frame.
        candidates = list(range(4, len(frames) - 16))
        if not candidates:
            continue
        rng = np.random.default_rng([seed, index, 3])
        tokens = _Tokens([seed, index, 4])
        chosen = sorted(rng.choice(candidates, size=min(split_cfg.two_stage_mappings_per_log, len(candidates)),
                                   replace=False).tolist())
        for c in chosen:
            now, prev = frames[c].token, frames[c - 1].token
            pairs = []
            for v in range(split_cfg.two_stage_variants):
                offset = float(rng.uniform(*split_cfg.lateral_perturbation)) * (1 if rng.uniform() < 0.5 else -1)
                if v == 0:
                    offset *= 0.3  # one variant close to the human endpoint
                dh = float(rng.normal(0.0, split_cfg.heading_perturbation))
                sf = float(rng.uniform(*split_cfg.speed_perturbation))
                # One displacement for the (now, prev) pair, kept on the road over both history windows.
                offset = _keep_on_road(net, [frames[i].snap.ego for i in range(c + 4, c + 9)], offset, dh)
                blobs = two_dir / "sensor_blobs"
                scene_now, tok_now, pose_now = _synthetic_scene(net, cfg, log_name, frames, c + 8, offset, dh, sf,
                                                                tokens, now, raster, rig, blobs)
                scene_prev, tok_prev, pose_prev = _synthetic_scene(net, cfg, log_name, frames, c + 7, offset, dh, sf,
                                                                   tokens, prev, raster, rig, blobs)
                for scene, tok, pose, role, orig in ((scene_now, tok_now, pose_now, "now", frames[c + 8].token),
                                                     (scene_prev, tok_prev, pose_prev, "prev", frames[c + 7].token)):
                    write_synthetic_scene(two_dir / "synthetic_scene_pickles" / f"{tok}.pkl", scene)
                    synthetic_tokens.append(tok)
                    attributes.append({
                        "synthetic_scene_token": tok, "corresponding_original_scene_token": orig,
                        "corresponding_original_initial_token": now if role == "now" else prev,
                        "log_name": log_name, "map_name": net.location,
                        "viewpoint": json.dumps([round(float(x), 6) for x in pose]),
                        "pair_identifier": f"{now}_{v}", "role": role,
                    })
                pairs.append((tok_now, tok_prev))
            mappings.append((now, prev, pairs))
        if log_name not in two_stage_logs:
            two_stage_logs.append(log_name)
            write_log(two_dir / "openscene_meta_datas" / f"{log_name}.pkl", dicts)

    splits_dir = root / "navsim_config" / "train_test_split"
    write_split(splits_dir, SplitSpec(
        name=ONE_STAGE_SPLIT, data_split="test",
        scene_filter=SceneFilterSpec(num_history_frames=4, num_future_frames=10,
                                     frame_interval=split_cfg.navtest_frame_interval, log_names=tuple(logs),
                                     tokens=tuple(one_stage_tokens))))
    if mappings:
        first = [t for now, prev, _ in mappings for t in (now, prev)]
        write_split(splits_dir, SplitSpec(
            name=TWO_STAGE_SPLIT, data_split="test",
            scene_filter=SceneFilterSpec(num_history_frames=4, num_future_frames=8, frame_interval=1,
                                         log_names=tuple(two_stage_logs), tokens=tuple(first),
                                         include_synthetic_scenes=True, synthetic_scene_tokens=tuple(synthetic_tokens),
                                         reactive_synthetic_initial_tokens=tuple(synthetic_tokens),
                                         non_reactive_synthetic_initial_tokens=()),
            mappings=tuple((now, prev, tuple(pairs)) for now, prev, pairs in mappings)))
        with open(two_dir / "synthetic_scenes_attributes.csv.tmp", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(attributes[0]))
            writer.writeheader()
            writer.writerows(attributes)
        os.replace(two_dir / "synthetic_scenes_attributes.csv.tmp", two_dir / "synthetic_scenes_attributes.csv")
    if train_logs:
        train_names = [p.stem for p in sorted((root / "navsim_logs" / "trainval").glob("*.pkl"))]
        write_split(splits_dir, SplitSpec(
            name=TRAIN_SPLIT, data_split="trainval",
            scene_filter=SceneFilterSpec(num_history_frames=4, num_future_frames=10, frame_interval=1,
                                         log_names=tuple(train_names))))
    summary = WorldSummary(str(root), seed, tuple(logs), total_frames, len(one_stage_tokens), len(mappings),
                           len(synthetic_tokens), time.perf_counter() - t0)
    meta = {"generator": "irlvla_bench.world", "version": 1, "seed": seed, "logs": n_logs, "train_logs": train_logs,
            "config": asdict(cfg), "summary": {k: v for k, v in asdict(summary).items() if k not in ("seconds", "root")}}
    (root / "world.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))
    return summary
