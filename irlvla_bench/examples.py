"""Small procedural scoring cases (``navsim-scoring-case/v1``) for the demo and the tests.

A straight multi-lane road at a random heading with a scenario on it (free road, slower lead vehicle, a cone in
the ego lane, a pedestrian crossing, oncoming traffic) and a fan of proposals that pass and fail different
sub-metrics. The cases go through the same validating reader as any user file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from irlvla_bench.io.atomic import write_json_atomic

LANE_WIDTH = 3.5
ROAD_START, ROAD_END = -60.0, 160.0
SCENARIOS = ("free", "lead", "cone", "pedestrian", "oncoming")


def _frame(origin: np.ndarray, heading: float):
    c, s = np.cos(heading), np.sin(heading)

    def to_global(lon, lat):
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        return np.stack([origin[0] + c * lon - s * lat, origin[1] + s * lon + c * lat], axis=-1)

    return to_global


def _strip(to_global, lat_lo: float, lat_hi: float) -> list:
    lon = np.linspace(ROAD_START, ROAD_END, 23)
    right = to_global(lon, np.full_like(lon, lat_lo))
    left = to_global(lon[::-1], np.full_like(lon, lat_hi))
    return np.vstack([right, left]).tolist()


def make_case(scenario: str, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    heading = float(rng.uniform(-np.pi, np.pi))
    origin = rng.uniform(-500, 500, 2) + np.array([600000.0, 4300000.0])
    to_global = _frame(origin, heading)
    speed = float(rng.uniform(7.0, 11.0))
    time_us = 1_630_000_000_000_000 + int(rng.integers(0, 10**9)) * 1000

    # Two forward lanes (ego in lane 0 at lateral 0) and one oncoming lane on the left.
    lanes = {"fwd_0": (-LANE_WIDTH / 2, LANE_WIDTH / 2), "fwd_1": (LANE_WIDTH / 2, 1.5 * LANE_WIDTH)}
    back = (1.5 * LANE_WIDTH, 2.5 * LANE_WIDTH)
    objects = [
        {"id": "rb_fwd", "layer": "roadblock", "polygon": _strip(to_global, -LANE_WIDTH / 2, 1.5 * LANE_WIDTH),
         "lane_ids": list(lanes)},
        {"id": "rb_back", "layer": "roadblock", "polygon": _strip(to_global, *back), "lane_ids": ["back_0"]},
    ]
    for lane_id, (lo, hi) in lanes.items():
        lon = np.linspace(ROAD_START, ROAD_END, 12)
        objects.append({"id": lane_id, "layer": "lane", "roadblock_id": "rb_fwd", "polygon": _strip(to_global, lo, hi),
                        "baseline": to_global(lon, np.full_like(lon, (lo + hi) / 2)).tolist(), "speed_limit_mps": 13.9})
    lon = np.linspace(ROAD_END, ROAD_START, 12)
    objects.append({"id": "back_0", "layer": "lane", "roadblock_id": "rb_back", "polygon": _strip(to_global, *back),
                    "baseline": to_global(lon, np.full_like(lon, sum(back) / 2)).tolist(), "speed_limit_mps": 13.9})

    centerline_lon = np.arange(ROAD_START, ROAD_END + 1.0, 1.0)
    centerline = np.column_stack([to_global(centerline_lon, np.zeros_like(centerline_lon)),
                                  np.full(len(centerline_lon), heading)])

    t = np.arange(41) * 0.1
    ego_pose = [float(origin[0]), float(origin[1]), heading]
    tracked: list[list[dict]] = [[] for _ in range(41)]

    def add_track(token, kind, lon0, lat, v_lon, v_lat=0.0, size=(4.6, 1.9, 1.6), yaw=0.0):
        for i, ti in enumerate(t):
            xy = to_global(lon0 + v_lon * ti, lat + v_lat * ti)
            vel = [float(np.cos(heading) * v_lon - np.sin(heading) * v_lat),
                   float(np.sin(heading) * v_lon + np.cos(heading) * v_lat)]
            tracked[i].append({"token": token, "type": kind,
                               "box": [float(xy[0]), float(xy[1]), heading + yaw, *size], "velocity": vel})

    lead_gap = None
    if scenario == "lead":
        lead_gap = float(rng.uniform(18, 25))
        add_track("lead_vehicle", "vehicle", lead_gap, 0.0, speed * 0.45)
    elif scenario == "cone":
        add_track("cone", "traffic_cone", float(rng.uniform(22, 30)), 0.2, 0.0, size=(0.5, 0.5, 0.8))
    elif scenario == "pedestrian":
        add_track("walker", "pedestrian", float(rng.uniform(24, 30)), -4.0, 0.0, v_lat=1.4, size=(0.6, 0.6, 1.8))
    elif scenario == "oncoming":
        add_track("oncoming_car", "vehicle", 60.0, 2 * LANE_WIDTH, -speed, size=(4.6, 1.9, 1.6), yaw=np.pi)

    # PDM-Closed stand-in: keep the lane, follow the lead with a time gap when there is one.
    ref_speed = np.full(41, speed)
    if lead_gap is not None:
        ref_speed = np.minimum(speed, np.maximum(0.45 * speed, speed - 2.0 * t))
    ref_lon = np.concatenate([[0.0], np.cumsum(ref_speed[:-1] * 0.1)])
    reference = np.column_stack([to_global(ref_lon, np.zeros(41)), np.full(41, heading)])

    def poses(lon, lat):
        lat = np.asarray(lat, float)
        yaw = np.arctan2(np.gradient(lat), np.gradient(lon))
        return np.column_stack([lon, lat, yaw]).tolist()

    tk = np.arange(1, 9) * 0.5
    proposals = {
        "keep": (speed * tk, np.zeros(8)),
        "accelerate": (speed * tk + 0.75 * tk**2, np.zeros(8)),
        "brake": (speed * tk - 0.75 * tk**2, np.zeros(8)),
        "lane_change_left": (speed * tk, LANE_WIDTH / (1 + np.exp(-2.0 * (tk - 2.0)))),
        "into_oncoming": (speed * tk, 2 * LANE_WIDTH / (1 + np.exp(-2.5 * (tk - 1.5)))),
        "off_road_right": (speed * tk, -4.0 / (1 + np.exp(-2.5 * (tk - 1.5)))),
        "stop": (np.minimum(speed * tk - speed / 8.0 * tk**2, speed**2 / (2 * speed / 4.0)), np.zeros(8)),
    }
    human = proposals["brake" if lead_gap is not None else "keep"]
    past_t = np.array([-1.5, -1.0, -0.5, 0.0])
    past = [{"rear_axle": [*map(float, to_global(speed * ti, 0.0)), heading], "velocity": [speed, 0.0],
             "acceleration": [0.0, 0.0], "time_us": time_us + int(round(ti * 1e6))} for ti in past_t]
    return {
        "schema": "navsim-scoring-case/v1",
        "case_id": f"example_{scenario}_{seed}",
        "description": f"procedural example: {scenario}",
        "token": f"{rng.integers(0, 2**63):016x}"[:16],
        "log_name": f"example_log_{seed}",
        "map_name": "procedural",
        "scene_type": "original",
        "time_us": time_us,
        "vehicle": None,
        "ego": {"rear_axle": ego_pose, "velocity": [speed, 0.0], "acceleration": [0.0, 0.0]},
        "map": {"objects": objects},
        "route_lane_ids": list(lanes),
        "centerline": centerline.tolist(),
        "pdm_reference": {"interval_s": 0.1, "states": reference.tolist()},
        "human_future": poses(*human),
        "human_past": past,
        "tracked_objects": tracked,
        "proposals": [{"id": pid, "poses": poses(*traj)} for pid, traj in proposals.items()],
    }


def write_examples(folder: str | Path, *, seed: int = 0) -> list[Path]:
    folder = Path(folder)
    written = []
    for index, scenario in enumerate(SCENARIOS):
        path = folder / f"{index:02d}_{scenario}.json"
        write_json_atomic(path, make_case(scenario, seed=seed * 100 + index))
        written.append(path)
    return written
