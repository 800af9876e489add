"""The procedural world on disk: nuPlan GPKG maps, NAVSIM log pickles, sensor blobs, splits, determinism."""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import shapely
from test_data_fixtures import N_LOGS, SEED, tiny_world

from irlvla_bench.caching.pdm_closed import box_corners, ego_polygon
from irlvla_bench.io.navsim_logs import read_log, read_log_raw, read_synthetic_scene
from irlvla_bench.io.nuplan_map import MAP_LOCATIONS, REQUIRED_LAYERS, load_map, map_path
from irlvla_bench.io.sensors import CAMERA_NAMES, read_image, read_pcd
from irlvla_bench.io.splits import list_scenes, load_split

LOCATION = "us-nv-las-vegas-strip"


def _logs(root: Path) -> list[Path]:
    return sorted((root / "navsim_logs" / "test").glob("*.pkl"))


def test_layout_has_every_part_navsim_reads():
    root, summary = tiny_world()
    versions = json.loads((root / "maps" / "nuplan-maps-v1.0.json").read_text())
    assert set(versions) == set(MAP_LOCATIONS)
    for location in MAP_LOCATIONS:
        assert map_path(root / "maps", location).exists()
    assert len(_logs(root)) == N_LOGS == len(summary.logs)
    two = root / "navhard_two_stage"
    assert sorted(p.stem for p in (two / "openscene_meta_datas").glob("*.pkl"))
    assert len(list((two / "synthetic_scene_pickles").glob("*.pkl"))) == summary.synthetic_scenes > 0
    assert (two / "synthetic_scenes_attributes.csv").read_text().count("\n") == summary.synthetic_scenes + 1
    for split in ("navtest", "navhard_two_stage"):
        assert (root / "navsim_config" / "train_test_split" / f"{split}.yaml").exists()
        assert (root / "navsim_config" / "train_test_split" / "scene_filter" / f"{split}.yaml").exists()


def test_gpkg_schema_integer_ids_one_crs_unique_fids():
    root, _ = tiny_world()
    path = map_path(root / "maps", LOCATION)
    con = sqlite3.connect(path)
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert set(REQUIRED_LAYERS) | {"meta"} <= tables
    meta = dict(con.execute("select key, value from meta"))
    assert meta["projectedCoordSystem"] == MAP_LOCATIONS[LOCATION]
    id_columns = {
        "lanes_polygons": ("lane_fid", "lane_group_fid"),
        "lane_connectors": ("exit_lane_fid", "entry_lane_fid", "lane_group_connector_fid"),
        "lane_group_connectors": ("from_lane_group_fid", "to_lane_group_fid"),
        "baseline_paths": ("lane_fid", "lane_connector_fid"),
        "gen_lane_connectors_scaled_width_polygons": ("lane_connector_fid",),
    }
    for layer, cols in id_columns.items():
        types = {row[1]: row[2] for row in con.execute(f'pragma table_info("{layer}")')}
        for col in cols:
            assert types[col] == "INTEGER", (layer, col, types[col])
    fids = []
    for layer in REQUIRED_LAYERS:
        fids += [r[0] for r in con.execute(f'select fid from "{layer}"')]
    assert len(fids) == len(set(fids)), "fids must be unique across layers"
    srs = {r[0] for r in con.execute("select srs_id from gpkg_geometry_columns")}
    assert srs == {int(MAP_LOCATIONS[LOCATION].split(":")[1])}


def test_map_geometry_tiles_and_connects():
    root, _ = tiny_world()
    nmap = load_map(root / "maps", LOCATION)
    assert len(nmap.areas["intersection"]) == 4 and len(nmap.areas["carpark_area"]) == 1
    for block in nmap.blocks.values():
        assert block.polygon.is_valid and block.lane_ids
        if not block.is_connector:
            lanes = [nmap.lanes[i].polygon for i in block.lane_ids]
            assert sum(p.area for p in lanes) == pytest.approx(block.polygon.area, rel=1e-6)
    junctions = shapely.unary_union(list(nmap.areas["intersection"].values())).buffer(1e-6)
    for lane in nmap.lanes.values():
        assert len(lane.baseline) >= 3 and lane.polygon.is_valid
        assert lane.outgoing, f"dead end at lane {lane.id}"
        if lane.is_connector:
            (src,), (dst,) = lane.incoming, lane.outgoing
            # Baselines run in driving direction and join end to start.
            assert np.allclose(nmap.lanes[src].baseline[-1, :2], lane.baseline[0, :2])
            assert np.allclose(lane.baseline[-1, :2], nmap.lanes[dst].baseline[0, :2])
            assert lane.polygon.difference(junctions).area < 0.02, "connector surface outside the junction"
            # The lane graph and the roadblock graph agree.
            assert nmap.blocks[lane.roadblock_id].incoming == (nmap.lanes[src].roadblock_id,)
            assert nmap.blocks[lane.roadblock_id].outgoing == (nmap.lanes[dst].roadblock_id,)


def test_logs_are_2hz_frames_with_consistent_ego_and_tracks():
    root, _ = tiny_world()
    for path in _logs(root):
        frames = read_log(path)
        raw = read_log_raw(path)
        assert all(set(CAMERA_NAMES) <= set(f["cams"]) for f in raw)
        assert np.all(np.diff([f.timestamp_us for f in frames]) == 500_000)
        assert all(re.fullmatch(r"[0-9a-f]{16}", f.token) for f in frames)
        assert len({f.token for f in frames}) == len(frames)
        for a, b in zip(frames, frames[1:]):
            step = np.hypot(*(b.ego_pose[:2] - a.ego_pose[:2]))
            mean_speed = 0.5 * (a.ego_velocity[0] + b.ego_velocity[0])
            assert step == pytest.approx(0.5 * mean_speed, abs=0.5)
            if step > 1.0:  # heading from the quaternion follows the direction of motion
                direction = np.arctan2(*(b.ego_pose[1::-1] - a.ego_pose[1::-1]))
                assert abs(np.angle(np.exp(1j * (direction - a.ego_pose[2])))) < 0.3
            # Vehicle tracks move as their logged velocity says.
            pos_a = {t: (bx, v) for t, n, bx, v in zip(a.track_tokens, a.names, a.boxes, a.velocities) if n == "vehicle"}
            for t, n, bx in zip(b.track_tokens, b.names, b.boxes):
                if n == "vehicle" and t in pos_a:
                    moved = np.hypot(*(bx[:2] - pos_a[t][0][:2]))
                    assert moved <= 0.5 * np.hypot(*pos_a[t][1]) + 0.5 * 8.0 * 0.5 + 0.1


def test_human_trajectory_is_collision_free_and_on_road():
    root, _ = tiny_world()
    nmap = load_map(root / "maps", LOCATION)
    road = shapely.unary_union([b.polygon for b in nmap.blocks.values() if not b.is_connector]
                               + list(nmap.areas["intersection"].values())
                               + list(nmap.areas["carpark_area"].values())).buffer(0.05)
    for path in _logs(root):
        for f in read_log(path):
            ego = ego_polygon(f.ego_pose)
            assert road.contains(ego)
            movers = [shapely.Polygon(box_corners(*b[:5])) for b, n in zip(f.boxes, f.names) if n in ("vehicle", "bicycle")]
            assert not any(ego.intersects(p) for p in movers)
            tree = shapely.STRtree(movers)
            a, b = tree.query(movers, predicate="intersects")
            assert np.all(a == b), "agents overlap each other"


def test_sensor_blobs_are_readable_images_and_point_clouds():
    root, _ = tiny_world()
    path = _logs(root)[0]
    frame = read_log_raw(path)[5]
    blobs = root / "sensor_blobs" / "test"
    for cam in CAMERA_NAMES:
        entry = frame["cams"][cam]
        img = read_image(blobs / entry["data_path"])
        k = entry["cam_intrinsic"]
        assert img.shape == (int(round(2 * k[1, 2])), int(round(2 * k[0, 2])), 3)
        assert img.std() > 5.0, f"{cam} image is flat"
        rot = entry["sensor2lidar_rotation"]
        assert np.allclose(rot @ rot.T, np.eye(3))
    front = read_image(blobs / frame["cams"]["CAM_F0"]["data_path"])
    lower = front[front.shape[0] * 3 // 4:].reshape(-1, 3).astype(float)
    assert np.mean(np.abs(lower[:, 0] - lower[:, 2]) < 30) > 0.5, "road (grey) in front of the ego"
    points = read_pcd(blobs / frame["lidar_path"])
    assert points.shape[0] == 6 and points.shape[1] > 10
    ground = points[:, points[3] < 0.3]
    assert np.median(ground[2]) == pytest.approx(-1.85, abs=0.05)


def test_synthetic_scenes_tie_to_first_stage_scenes():
    root, _ = tiny_world()
    split = load_split("navhard_two_stage", root)
    listing = list_scenes(root, split)
    originals = {s.token: s for s in listing.scenes if s.kind == "original"}
    log_tokens = {}
    for path in sorted((root / "navhard_two_stage" / "openscene_meta_datas").glob("*.pkl")):
        log_tokens[path.stem] = [f["token"] for f in read_log_raw(path)]
    synthetic = {s.token: s for s in listing.scenes if s.kind == "synthetic"}
    assert len(synthetic) == sum(2 * len(pairs) for _, _, pairs in split.mappings)
    for now, prev, pairs in split.mappings:
        assert now in originals and prev in originals
        for syn_now, syn_prev in pairs:
            for syn, first in ((syn_now, now), (syn_prev, prev)):
                scene = read_synthetic_scene(synthetic[syn].path)
                meta = scene.metadata
                assert len(syn) == 17 and meta["initial_token"] == syn
                assert len(scene.frames) == 4 and len(scene.extended_tracks) == 8
                ref = originals[first]
                tokens = log_tokens[ref.log_name]
                # NAVSIM loads a synthetic scene iff it names the last frame of a loaded first-stage scene.
                assert meta["corresponding_original_scene"] == tokens[ref.start + 11]
            a, b = read_synthetic_scene(synthetic[syn_now].path), read_synthetic_scene(synthetic[syn_prev].path)
            assert a.frames[-1].timestamp_us - b.frames[-1].timestamp_us == 500_000
    raw = (root / "navhard_two_stage" / "synthetic_scene_pickles" / f"{next(iter(synthetic))}.pkl").read_bytes()
    assert b"nuplan.common.actor_state.agent" in raw and b"DetectionsTracks" in raw


def test_split_yaml_quotes_every_token():
    root, summary = tiny_world()
    text = (root / "navsim_config" / "train_test_split" / "scene_filter" / "navtest.yaml").read_text()
    tokens = re.findall(r"^\s+- (.+)$", text, flags=re.M)
    assert tokens and all(t.startswith("'") and t.endswith("'") for t in tokens)
    split = load_split("navtest", root)
    assert len(list_scenes(root, split).scenes) == summary.one_stage_scenes


def test_generation_is_deterministic(tmp_path):
    from dataclasses import replace

    from irlvla_bench.world import generate_world, preset

    cfg = replace(preset("tiny"), cameras=False)
    cfg = replace(cfg, sensors=replace(cfg.sensors, lidar=False))
    a = generate_world(tmp_path / "a", 1, SEED, cfg)
    b = generate_world(tmp_path / "b", 1, SEED, cfg)
    c = generate_world(tmp_path / "c", 1, SEED + 1, cfg)
    assert a.logs == b.logs
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.suffix in (".pkl", ".yaml", ".csv"))
    assert files
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    log_a = pickle.loads(next((tmp_path / "a" / "navsim_logs" / "test").glob("*.pkl")).read_bytes())
    log_c = pickle.loads(next((tmp_path / "c" / "navsim_logs" / "test").glob("*.pkl")).read_bytes())
    assert log_a[0]["token"] != log_c[0]["token"]
    map_a, map_b = load_map(tmp_path / "a" / "maps", LOCATION), load_map(tmp_path / "b" / "maps", LOCATION)
    assert map_a.lanes.keys() == map_b.lanes.keys()
    assert all(map_a.lanes[k].polygon.equals_exact(map_b.lanes[k].polygon, 0.0) for k in map_a.lanes)
