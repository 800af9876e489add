"""Scene frame -> scoring case (``navsim-scoring-case/v1``), the content of NAVSIM's ``MetricCache``:
map objects of the drivable map within 100 m, route lanes after route correction, the centerline from the ego
lane, objects interpolated to 10 Hz, red on-route connectors, human past and future, the PDM-Closed reference.
Every case is validated by ``irlvla_bench.io.scoring_case.parse_case``.
"""

from __future__ import annotations

import numpy as np

from irlvla_bench.caching.objects import AGENT_NAMES, interpolate_objects, red_connectors_per_frame
from irlvla_bench.caching.pdm_closed import (
    NAVSIM_PDM_CLOSED,
    PDMClosedConfig,
    Selector,
    ego_polygon,
    run_pdm_closed,
    to_ego_poses,
)
from irlvla_bench.caching.route import (
    RouteError,
    centerline,
    correct_route,
    drivable_objects,
    load_route,
    route_lane_ids,
    starting_lane,
)
from irlvla_bench.caching.scene import SceneData
from irlvla_bench.errors import InputError
from irlvla_bench.io.nuplan_map import NuPlanMap
from irlvla_bench.io.scoring_case import CASE_SCHEMA, parse_case
from irlvla_bench.types import NUM_TRAJECTORY_POSES, PACIFICA, ScoringCase

MAP_RADIUS = 100.0
HUMAN_PAST_FRAMES = 3  # iterations -3 .. 0 (t = -1.5 .. 0 s)
DEFAULT_PROPOSALS = ("pdm_closed", "constant_velocity", "brake")


class CachingError(RuntimeError):
    """A scene that cannot be cached for a reason other than malformed input (e.g. no lane near the ego)."""


def _ring(poly) -> tuple[list, list]:
    ext = np.asarray(poly.exterior.coords)[:-1, :2].tolist()
    holes = [np.asarray(h.coords)[:-1, :2].tolist() for h in poly.interiors]
    return ext, holes


def map_object_dicts(nmap: NuPlanMap, ids, layers) -> list[dict]:
    out = []
    for obj_id, layer in zip(ids, layers):
        poly = nmap.polygon(layer, obj_id)
        ring, holes = _ring(poly)
        d = {"id": obj_id, "layer": layer, "polygon": ring}
        if holes:
            d["holes"] = holes
        if layer in ("lane", "lane_connector"):
            lane = nmap.lanes[obj_id]
            d.update(roadblock_id=lane.roadblock_id, baseline=lane.baseline[:, :2].tolist(),
                     speed_limit_mps=lane.speed_limit_mps, incoming_ids=list(lane.incoming),
                     outgoing_ids=list(lane.outgoing))
        elif layer in ("roadblock", "roadblock_connector"):
            d["lane_ids"] = list(nmap.blocks[obj_id].lane_ids)
        out.append(d)
    return out


def _ego_dict(scene: SceneData, iteration: int, with_time: bool) -> dict:
    f = scene.ego_frame(iteration)
    d = {"rear_axle": f.ego_pose.tolist(), "velocity": f.ego_velocity.tolist(), "acceleration": f.ego_acceleration.tolist()}
    if with_time:
        d["time_us"] = int(scene.time_us(iteration))
    return d


def _human_future(scene: SceneData) -> list[list[float]]:
    origin = scene.current.ego_pose
    poses = np.array([scene.ego_frame(i).ego_pose for i in range(1, NUM_TRAJECTORY_POSES + 1)])
    return to_ego_poses(poses, origin).tolist()


def baseline_proposals(case: dict, reference: np.ndarray, names=DEFAULT_PROPOSALS) -> list[dict]:
    """Simple proposals stored with every cached case (agents replace them): the PDM-Closed trajectory,
    constant velocity straight ahead, and braking to a stop at 3 m/s^2."""
    ego = np.asarray(case["ego"]["rear_axle"])
    v = float(case["ego"]["velocity"][0])
    t = 0.5 * np.arange(1, NUM_TRAJECTORY_POSES + 1)
    out = []
    for name in names:
        if name == "pdm_closed":
            poses = to_ego_poses(reference[5:41:5], ego)
            label = "PDM-Closed reference"
        elif name == "constant_velocity":
            poses = np.column_stack([v * t, np.zeros_like(t), np.zeros_like(t)])
            label = "constant velocity, straight"
        elif name == "brake":
            t_stop = max(v, 0.0) / 3.0
            tt = np.minimum(t, t_stop)
            poses = np.column_stack([v * tt - 1.5 * tt**2, np.zeros_like(t), np.zeros_like(t)])
            label = "brake at 3 m/s^2"
        else:
            raise ValueError(f"unknown baseline proposal {name!r}")
        out.append({"id": name, "label": label, "poses": np.asarray(poses).tolist()})
    return out


def build_case_dict(scene: SceneData, nmap: NuPlanMap, *, selector: Selector | None = None,
                    pdm: PDMClosedConfig = NAVSIM_PDM_CLOSED, proposals=DEFAULT_PROPOSALS) -> dict:
    cur = scene.current
    where = f"frame[{cur.token}]"
    ego = cur.ego_pose
    heading = np.array([np.cos(ego[2]), np.sin(ego[2])])
    center = ego[:2] + PACIFICA.rear_axle_to_center * heading
    footprint = ego_polygon(ego)
    if not cur.roadblock_ids:
        raise InputError(scene.source, f"{where}.roadblock_ids", "empty route")
    try:
        raw_route = load_route(nmap, cur.roadblock_ids)
    except RouteError as exc:
        raise InputError(scene.source, f"{where}.roadblock_ids", str(exc)) from None
    route = correct_route(nmap, ego, raw_route)
    lanes_on_route = route_lane_ids(nmap, route)
    drivable = drivable_objects(nmap, center, MAP_RADIUS)
    if not drivable.ids:
        raise CachingError(f"{scene.token}: no drivable map object within {MAP_RADIUS} m of the ego "
                           f"(ego at {ego[:2].tolist()}; wrong map or CRS?)")
    start = starting_lane(nmap, drivable, lanes_on_route, ego, center, footprint)
    if start is None:
        raise CachingError(f"{scene.token}: no route lane to start the centerline from")
    line, _ = centerline(nmap, start, route, lanes_on_route)

    tracked = interpolate_objects(scene)
    raw_route_lanes = set(route_lane_ids(nmap, raw_route))
    red = red_connectors_per_frame(scene, raw_route_lanes)
    n_past = min(HUMAN_PAST_FRAMES, scene.num_history - 1)
    case = {
        "schema": CASE_SCHEMA,
        "case_id": scene.token,
        "description": f"{scene.log_name} {'synthetic' if scene.is_synthetic else 'original'} frame",
        "token": scene.token,
        "log_name": scene.log_name,
        "map_name": scene.map_name,
        "scene_type": "synthetic" if scene.is_synthetic else "original",
        "time_us": int(cur.timestamp_us),
        "vehicle": None,
        "ego": _ego_dict(scene, 0, with_time=False),
        "map": {"objects": map_object_dicts(nmap, drivable.ids, drivable.layers)},
        "route_lane_ids": lanes_on_route,
        "centerline": line.tolist(),
        "human_future": None if scene.is_synthetic else _human_future(scene),
        "human_past": [_ego_dict(scene, i, with_time=True) for i in range(-n_past, 1)],
        "tracked_objects": tracked,
        "red_lane_connectors": red,
    }
    # PDM-Closed plans on the raw current frame and the current red lights of the corrected route.
    objs0 = scene.objects(0)
    current_objects = [
        {"token": t, "type": n, "box": b.tolist(), "velocity": (v if n in AGENT_NAMES else np.zeros(2)).tolist()}
        for t, n, b, v in zip(objs0.tokens, objs0.names, objs0.boxes, objs0.velocities)
    ]
    route_set = set(lanes_on_route)
    red_polys = {cid: nmap.lanes[cid].polygon for cid, is_red in scene.lights(0)
                 if is_red and cid in route_set and cid in nmap.lanes}
    result = run_pdm_closed(case, current_objects, red_polys, start.speed_limit_mps, selector, pdm)
    case["pdm_reference"] = {"states": result.trajectory.tolist(), "interval_s": pdm.interval_s}
    case["proposals"] = baseline_proposals(case, result.trajectory, proposals)
    return case


def build_case(scene: SceneData, nmap: NuPlanMap, **kwargs) -> ScoringCase:
    return parse_case(build_case_dict(scene, nmap, **kwargs), source=f"{scene.source}#{scene.token}")
