"""NAVSIM's reactive traffic (``NavsimIDMTrafficAgents``): vehicles driven by nuPlan's IDM agents.

What NAVSIM does, reproduced here (``navsim/traffic_agents_policies/navsim_IDM_traffic_agents.py``,
``navsim/planning/simulation/observation/navsim_idm/``, nuPlan ``observation/idm/``):

* Frame 0 is the logged frame as is, every object included (no ego-overlap removal as in log replay).
* Only vehicles present at frame 0 are simulated; other object types replay their log, and vehicles that only
  appear later never appear.
* Each frame-0 vehicle is snapped to a lane: the lanes containing its centre (strictly), else the lane
  connectors containing it when it stands in an intersection; among those the baseline whose nearest pose
  heading differs least from the vehicle's (unwrapped difference, as nuPlan computes it). Vehicles on no lane,
  farther than the snap threshold from the baseline, or whose snapped box hits the ego or an earlier snapped
  vehicle, are not simulated. The agent keeps that lane for good (NAVSIM passes no traffic lights, so nuPlan
  never extends the route) and drives it as nuPlan's ``InterpolatedPath``, which drops the baseline's last
  vertex; its target speed is the lane's speed limit (10 m/s without one).
* Of the vehicles not simulated, the parked ones stay, frozen at frame 0: stationary (< 0.1 m/s) and off all
  lanes and intersections, or farther than the snap threshold from their lane's baseline, each unless it
  overlaps a simulated agent or a parked vehicle kept before it in that frame. The others vanish after frame 0.
* The agents react to the ego one step late, with the ego's footprint centred at its rear axle (NAVSIM rebuilds
  the ego state from the simulated rear-axle pose as if it were the centre); see ``idm_kernels``.

A scene whose map has lane or lane connector without ``baseline`` cannot be simulated and raises
``InputError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.epdms.config import IDMConfig
from evaluators.epdms.geometry import convex_quads_intersect, point_in_polygon
from evaluators.epdms.traffic.base import Observation, box_corners, observation_from_tracks, register_policy
from evaluators.epdms.traffic.idm_geometry import box_corners_into, max_fan_points, nearest_pose, path_buffer_pieces
from evaluators.epdms.traffic.idm_kernels import GROUP, MAX_OWN, MIN_POINTS, group_bounds, idm_rollout
from evaluators.epdms.traffic.log_replay import ego_footprint
from irlvla_bench.errors import InputError
from irlvla_bench.types import MapLayer, ObjectType

_LANE_LAYERS = (MapLayer.LANE, MapLayer.LANE_CONNECTOR)


@dataclass(frozen=True)
class Lane:
    """A lane or lane connector as nuPlan's IDM sees it."""

    map_id: str
    map_index: int  # position in the case's map objects (for error messages)
    polygon: int  # index into the scene's drivable PolygonSet
    baseline: np.ndarray  # (M, 2)
    speed_limit_mps: float | None


@dataclass(frozen=True)
class LaneMap:
    lanes: tuple[Lane, ...]
    connectors: tuple[Lane, ...]
    intersections: tuple[int, ...]  # polygon indices


@dataclass(frozen=True)
class AgentPath:
    """nuPlan ``create_path_from_se2(baseline.discrete_path)``."""

    xy: np.ndarray  # (K, 2)
    progress: np.ndarray  # (K,)
    heading: np.ndarray  # (K,) unwrapped


@dataclass(frozen=True)
class IDMScene:
    """Everything the rollout needs, built once per scene."""

    agent_columns: np.ndarray  # (A,) columns of the simulated vehicles in the case's tracks
    parked_columns: np.ndarray  # (P,) columns of the other frame-0 vehicles, in frame-0 order
    kernel_args: tuple  # agent, path and parked arrays in ``idm_rollout``'s argument order
    base_boxes: np.ndarray  # (F, O, 5) boxes of the non-reactive part (frame 0 + replayed objects)
    base_present: np.ndarray  # (F, O)
    dims: np.ndarray  # (O, 2) frame-0 length, width of the vehicles
    first_stopped: np.ndarray  # (O,)
    is_agent: np.ndarray  # (O,)
    tokens: tuple[str, ...]


# ----------------------------------------------------------------------------------------------------------------
# Map


def lane_map(scene) -> LaneMap:
    """Lanes, lane connectors and intersections of the scene's map, in map order; every lane needs a baseline."""
    case = scene.case
    index = {map_id: p for p, map_id in enumerate(scene.drivable_ids)}
    lanes: dict[MapLayer, list[Lane]] = {MapLayer.LANE: [], MapLayer.LANE_CONNECTOR: []}
    intersections = []
    for i, obj in enumerate(case.map_objects):
        if obj.layer in _LANE_LAYERS:
            if obj.baseline is None:
                raise InputError(case.source, f"map.objects[{i}].baseline",
                                 f"{obj.layer.name.lower()} {obj.id!r} has no baseline; the idm traffic policy "
                                 "drives vehicles along lane baselines (give every lane and lane connector one)")
            lanes[obj.layer].append(Lane(obj.id, i, index[obj.id],
                                         np.ascontiguousarray(obj.baseline, dtype=np.float64), obj.speed_limit_mps))
        elif obj.layer == MapLayer.INTERSECTION:
            intersections.append(index[obj.id])
    return LaneMap(tuple(lanes[MapLayer.LANE]), tuple(lanes[MapLayer.LANE_CONNECTOR]), tuple(intersections))


def _contains(scene, polygon: int, x: float, y: float) -> bool:
    return bool(point_in_polygon(x, y, polygon, *scene.drivable.arrays))


def starting_lane(scene, lanes: LaneMap, x: float, y: float, heading: float, lookahead: float) -> Lane | None:
    """nuPlan ``get_starting_segment``: lanes holding the centre, else connectors when in an intersection; the
    one whose nearest baseline heading is closest (first on ties)."""
    candidates = [lane for lane in lanes.lanes if _contains(scene, lane.polygon, x, y)]
    if not candidates:
        if not any(_contains(scene, p, x, y) for p in lanes.intersections):
            return None
        candidates = [lane for lane in lanes.connectors if _contains(scene, lane.polygon, x, y)]
        if not candidates:
            return None
    diffs = [abs(nearest_pose(lane.baseline, x, y, lookahead)[2] - heading) for lane in candidates]
    return candidates[int(np.argmin(diffs))]


def in_lanes(scene, lanes: LaneMap, x: float, y: float) -> bool:
    """``is_in_layer(LANE) or is_in_layer(INTERSECTION)``."""
    return any(_contains(scene, lane.polygon, x, y) for lane in lanes.lanes) or any(
        _contains(scene, p, x, y) for p in lanes.intersections)


def agent_path(lane: Lane, config: IDMConfig, source: str) -> AgentPath:
    """nuPlan's path from a baseline: headings to the next vertex (the last repeats the previous), cumulative
    progress, vertices followed by a (nearly) repeated one dropped, and the last vertex dropped too (nuPlan zips
    N states with N-1 repetition flags)."""
    xy = lane.baseline
    diff = np.diff(xy, axis=0)
    heading = np.arctan2(diff[:, 1], diff[:, 0])
    heading = np.append(heading, heading[-1])
    progress = np.cumsum(np.append(0.0, np.linalg.norm(diff.T, axis=0)))
    repeated = np.isclose(np.diff(progress), 0.0, atol=config.repeated_progress_atol)
    keep = np.flatnonzero(~repeated)
    if len(keep) < 2:
        raise InputError(source, f"map.objects[{lane.map_index}].baseline",
                         f"lane {lane.map_id!r}: its baseline gives nuPlan's IDM a path of {len(keep)} point(s) "
                         "(the last vertex is dropped); it needs at least 3 distinct vertices")
    return AgentPath(xy=np.ascontiguousarray(xy[keep]), progress=progress[keep], heading=np.unwrap(heading[keep]))


# ----------------------------------------------------------------------------------------------------------------
# Scene preparation


def _box_quad(x, y, heading, length, width) -> np.ndarray:
    out = np.empty((4, 2))
    box_corners_into(x, y, heading, length / 2.0, width / 2.0, out)
    return out


def _buffer_arrays(paths: list[AgentPath], half_widths: list[float], config: IDMConfig) -> tuple:
    """Padded per-agent path arrays and their buffer pieces, in ``idm_rollout``'s argument order."""
    num = len(paths)
    kmax = max([len(p.xy) for p in paths], default=2)
    path_xy = np.zeros((num, kmax, 2))
    path_s = np.zeros((num, kmax))
    path_h = np.zeros((num, kmax))
    path_n = np.zeros(num, dtype=np.int64)
    quads = np.zeros((num, kmax - 1, 4, 2))
    fans = np.zeros((num, kmax, max_fan_points(config.buffer_quadrant_segments), 2))
    fan_n = np.zeros((num, kmax), dtype=np.int64)
    cut = np.zeros((num, kmax), dtype=np.int64)
    turn = np.zeros((num, kmax), dtype=np.int64)
    for a, (path, half_width) in enumerate(zip(paths, half_widths)):
        k = len(path.xy)
        path_xy[a, :k] = path.xy
        path_s[a, :k] = path.progress
        path_h[a, :k] = path.heading
        path_n[a] = k
        path_buffer_pieces(path.xy, half_width, config.buffer_quadrant_segments, config.buffer_separation_factor,
                           config.buffer_vertex_snap_factor, quads[a, : k - 1], fans[a, :k], fan_n[a, :k], cut[a, :k],
                           turn[a, :k])
    spts, scnt, sbox = _static_pieces(quads, fans, fan_n, path_n)
    sgroup = group_bounds(spts, scnt, (spts.shape[1] + GROUP - 1) // GROUP)
    # an agent's shape: its own pieces, the box and at most every static piece of its path
    max_entry_pieces = spts.shape[1] + MAX_OWN + 1
    return path_xy, path_s, path_h, path_n, quads, cut, turn, spts, scnt, sbox, sgroup, max_entry_pieces


def _static_pieces(quads: np.ndarray, fans: np.ndarray, fan_n: np.ndarray, path_n: np.ndarray):
    """Interleave each path's quads and fans as pieces 2i (quad of segment i) and 2i+1 (fan at vertex i+1), so a
    stretch of path is a contiguous range; with point counts and bounds (bbox, centre, radius of an enclosing
    circle, padded so that rounding never rejects touching pieces)."""
    num, kmax = fan_n.shape
    max_points = max(MIN_POINTS, int(fan_n.max(initial=0)))
    spts = np.zeros((num, 2 * kmax, max_points, 2))
    scnt = np.zeros((num, 2 * kmax), dtype=np.int64)
    spts[:, 0:2 * (kmax - 1):2, :4] = quads
    scnt[:, 0:2 * (kmax - 1):2] = 4
    spts[:, 1:2 * (kmax - 1):2] = fans[:, 1:, :max_points]
    scnt[:, 1:2 * (kmax - 1):2] = fan_n[:, 1:]
    for a, k in enumerate(path_n):
        scnt[a, 2 * (k - 1):] = 0  # padding beyond the path
    valid = (scnt >= 3)[..., None]
    used = (np.arange(max_points) < scnt[..., None])[..., None]
    lo_xy = np.where(used, spts, np.inf).min(axis=2)
    hi_xy = np.where(used, spts, -np.inf).max(axis=2)
    centre = np.where(valid, (np.where(valid, lo_xy, 0.0) + np.where(valid, hi_xy, 0.0)) / 2.0, 0.0)
    reach = np.where(used[..., 0], np.hypot(*np.moveaxis(spts - centre[:, :, None], -1, 0)), 0.0).max(axis=2)
    sbox = np.concatenate([lo_xy, hi_xy, centre, (reach * (1.0 + 1e-9) + 1e-9)[..., None]], axis=-1)
    return spts, scnt, sbox


def prepare_idm_scene(scene, config: IDMConfig) -> IDMScene:
    """Snap the frame-0 vehicles (nuPlan ``build_idm_agents_on_map_rails``), sort out the parked ones and build
    the arrays of the rollout and of the non-reactive part of the observation."""
    case = scene.case
    tracks = case.tracked_objects
    lanes = lane_map(scene)
    ego_box = ego_footprint(scene.initial_state, scene.vehicle)  # the real ego box, centred at its centre
    ego_speed = float(np.hypot(*case.ego.velocity))
    placed_boxes = [ego_box]
    agents, paths, parked, parked_eligible = [], [], [], []
    vehicles = [o for o in range(tracks.num_objects)
                if tracks.present[0, o] and tracks.types[o] == int(ObjectType.VEHICLE)]
    for o in vehicles:
        x, y, heading, length, width = tracks.boxes[0, o, :5]
        lane = starting_lane(scene, lanes, x, y, heading, config.heading_lookahead_m)
        deviation = None
        if lane is not None:
            px, py, pheading, progress = nearest_pose(lane.baseline, x, y, config.heading_lookahead_m)
            deviation = float(np.hypot(px - x, py - y))
        if lane is not None and deviation <= config.snap_threshold_m:
            snapped = _box_quad(px, py, pheading, length, width)
            if not any(convex_quads_intersect(snapped, other) for other in placed_boxes):
                placed_boxes.append(snapped)
                velocity = tracks.velocities[0, o]
                speed = ego_speed if np.isnan(velocity).any() else float(np.hypot(*velocity))
                paths.append(agent_path(lane, config, case.source))
                agents.append((o, progress, speed, lane.speed_limit_mps or config.target_velocity, length, width,
                               snapped))
                continue
        # not simulated: parked if stationary off the lanes, or far from its lane's baseline
        stationary = float(np.hypot(*tracks.velocities[0, o])) < config.parked_speed
        eligible = (stationary and not in_lanes(scene, lanes, x, y)) or (
            deviation is not None and deviation > config.snap_threshold_m)
        parked.append(o)
        parked_eligible.append(eligible)

    num = len(agents)
    tokens = [tracks.tokens[a[0]] for a in agents]
    excluded = np.zeros((num, num + 1), dtype=np.bool_)
    for a, token in enumerate(tokens):
        for j, other in enumerate(tokens):
            excluded[a, j] = other in token  # nuPlan drops occupancy ids that are substrings of the agent's token
        excluded[a, num] = "ego" in token
    ego_like = np.array(["ego" in t for t in tokens] + [True], dtype=np.bool_)
    arrays = _buffer_arrays(paths, [a[5] / 2.0 for a in agents], config)
    kernel_args = (
        np.array([a[1] for a in agents], dtype=np.float64),
        np.array([a[2] for a in agents], dtype=np.float64),
        np.array([a[3] for a in agents], dtype=np.float64),
        np.array([a[4] for a in agents], dtype=np.float64),
        np.array([a[5] for a in agents], dtype=np.float64),
        np.array([a[6] for a in agents]).reshape(num, 4, 2),
        *arrays,
        excluded,
        ego_like,
        np.array([box_corners(tracks.boxes[0, o][None])[0] for o in parked]).reshape(len(parked), 4, 2),
        np.array(parked_eligible, dtype=np.bool_),
    )

    # The part of every frame that does not react: frame 0 as logged, non-vehicles replayed.
    vehicle = tracks.types == int(ObjectType.VEHICLE)
    base_present = tracks.present.copy()
    base_present[1:, vehicle] = False
    base_boxes = np.where(base_present[..., None], tracks.boxes[..., :5], 0.0)
    dims = np.where(tracks.present[0][:, None], tracks.boxes[0, :, 3:5], 0.0)
    logged = observation_from_tracks(tracks, scene.config.collision_stopped_speed)
    return IDMScene(
        agent_columns=np.array([a[0] for a in agents], dtype=np.int64),
        parked_columns=np.array(parked, dtype=np.int64),
        kernel_args=kernel_args,
        base_boxes=base_boxes,
        base_present=base_present,
        dims=dims,
        first_stopped=logged.first_stopped[0],
        is_agent=logged.is_agent,
        tokens=tracks.tokens,
    )


# ----------------------------------------------------------------------------------------------------------------
# Rollout -> observation


def rollout(idm: IDMScene, ego_states: np.ndarray, vehicle, config: IDMConfig, *, lead: np.ndarray | None = None):
    """Per row: agent poses (R, F, A, 3), agents alive (R, F, A), parked vehicles kept (R, F, P). ``lead``
    (R, F, A, 3), if given, receives each IDM step's gap, leader speed and leader entry (diagnostics)."""
    num_rows, num_frames = ego_states.shape[:2]
    num_agents, num_parked = len(idm.agent_columns), len(idm.parked_columns)
    pose = np.zeros((num_rows, num_frames, num_agents, 3))
    alive = np.zeros((num_rows, num_frames, num_agents), dtype=np.bool_)
    kept = np.zeros((num_rows, num_frames, num_parked), dtype=np.bool_)
    if lead is None:
        lead = np.zeros((num_rows, num_frames, num_agents, 3))
    params = (config.min_gap_to_lead_agent, config.headway_time, config.accel_max, config.decel_max,
              config.acceleration_exponent, config.step_s, config.radius_m)
    idm_rollout(np.ascontiguousarray(ego_states, dtype=np.float64), float(vehicle.length), float(vehicle.width),
                *idm.kernel_args, params, pose, alive, kept, lead)
    return pose, alive, kept


def observation(idm: IDMScene, pose: np.ndarray, alive: np.ndarray, kept: np.ndarray) -> Observation:
    num_rows = pose.shape[0]
    boxes = np.repeat(idm.base_boxes[None], num_rows, axis=0)  # (R, F, O, 5)
    present = np.repeat(idm.base_present[None], num_rows, axis=0)
    cols = idm.agent_columns
    if len(cols):
        boxes[:, 1:, cols, :3] = np.where(alive[:, 1:, :, None], pose[:, 1:], 0.0)
        boxes[:, 1:, cols, 3:5] = np.where(alive[:, 1:, :, None], idm.dims[cols], 0.0)
        present[:, 1:, cols] = alive[:, 1:]
    cols = idm.parked_columns
    if len(cols):
        boxes[:, 1:, cols] = np.where(kept[:, 1:, :, None], idm.base_boxes[0, cols], 0.0)
        present[:, 1:, cols] = kept[:, 1:]
    return Observation(
        tokens=idm.tokens,
        corners=box_corners(boxes),
        centers=np.ascontiguousarray(boxes[..., :2]),
        radius=np.hypot(boxes[..., 3], boxes[..., 4]) / 2.0,
        present=present,
        is_agent=idm.is_agent,
        first_stopped=np.repeat(idm.first_stopped[None], num_rows, axis=0),
    )


@register_policy("idm")
class IDMTraffic:
    """NAVSIM's reactive IDM traffic: one observation per ego row."""

    name = "idm"
    reacts_to_ego = True

    def __init__(self) -> None:
        self._prepared: tuple[object, IDMScene] | None = None

    def prepare(self, scene) -> IDMScene:
        """The scene's agents and paths, built on first use and kept for the scene's other rows."""
        if self._prepared is None or self._prepared[0] is not scene:
            self._prepared = (scene, prepare_idm_scene(scene, scene.config.idm))
        return self._prepared[1]

    def observe(self, scene, ego_states: np.ndarray) -> Observation:
        idm = self.prepare(scene)
        pose, alive, kept = rollout(idm, ego_states, scene.vehicle, scene.config.idm)
        return observation(idm, pose, alive, kept)


__all__ = ["IDMTraffic", "IDMScene", "lane_map", "observation", "prepare_idm_scene", "rollout"]
