"""Scene inputs of the RWM, in NumPy (no torch): the BEV array an encoder reads plus the ego vector and the
scene's reference trajectories.

The ``raster`` BEV is *oracle perception*: it is rendered from the cached scoring case (the map, the route, the
objects seen at t = 0 with their velocities, the red on-route connectors at t = 0), i.e. what a perfect
perception stack would hand the planner. It holds signed distance fields rather than masks, so a bilinear read
at an ego-box corner tells how far inside or outside a region the corner is, at sub-cell precision. Moving
objects get one field per future time, forecast from their t = 0 state (``agents.rwm.motion``: along their
lane by default, or with constant velocity); the future of the log is not used unless
``object_motion="logged"`` (an oracle ablation: the scorer's own view of the future).

Channel order (all fields positive *inside* the region, clipped at +-clip and divided by clip / 2):
``drivable, lane_edge (unsigned), lane_count, route, intersection, centerline_distance (unsigned),
centerline_s, centerline_cos, centerline_sin, red_light, speed_limit, stopped_agents, static_objects,
moving_agents@t for t in object_times_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree

from agents.rwm.config import GridConfig, RasterConfig
from agents.rwm.motion import forecast
from irlvla_bench.labelling.trajectories import (
    anchor_poses,
    previous_frame_index,
    previous_plan,
    reference_poses,
    to_ego_frame,
)
from irlvla_bench.types import MapLayer, ObjectType, ScoringCase

MAP_CHANNELS = ("drivable", "lane_edge", "lane_count", "route", "intersection", "centerline_distance",
                "centerline_s", "centerline_cos", "centerline_sin", "red_light", "speed_limit", "stopped_agents",
                "static_objects")
EGO_DIM = 23  # see ego_vector
_DRIVABLE_LAYERS = (MapLayer.ROADBLOCK, MapLayer.INTERSECTION, MapLayer.CARPARK_AREA, MapLayer.DRIVABLE_AREA)
_LANE_LAYERS = (MapLayer.LANE, MapLayer.LANE_CONNECTOR)
_STOPPED_SPEED = 5e-2  # NAVSIM's collision_stopped_speed: stopped tracks make every collision at-fault


@dataclass(frozen=True)
class SceneInputs:
    """Everything the RWM reads about one scene besides the candidates."""

    token: str
    bev: np.ndarray  # (C, H, W) float32
    ego: np.ndarray  # (EGO_DIM,) float32
    reference: np.ndarray  # (8, 3) PDM-Closed reference, ego frame
    human: np.ndarray | None  # (8, 3) logged human future (original frames)
    previous: np.ndarray | None  # (9, 3) expert's previous plan in the current ego frame, t = -0.5 .. 3.5 s
    initial_state: np.ndarray | None = None  # (11,) current ego state, ego frame (None: an old cache entry)
    previous_state: np.ndarray | None = None  # (11,) the previous frame's ego state in the current ego frame

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez`` (missing trajectories as NaN)."""
        nan = np.full((8, 3), np.nan)
        return {"bev": self.bev.astype(np.float16), "ego": self.ego, "reference": self.reference,
                "human": nan if self.human is None else self.human,
                "previous": np.full((9, 3), np.nan) if self.previous is None else self.previous,
                "initial_state": self.initial_state,
                "previous_state": np.full(11, np.nan) if self.previous_state is None else self.previous_state}

    @classmethod
    def from_arrays(cls, token: str, data) -> "SceneInputs":
        human = np.asarray(data["human"], dtype=np.float64)
        previous = np.asarray(data["previous"], dtype=np.float64)
        initial = np.asarray(data["initial_state"], dtype=np.float64) if "initial_state" in data else None
        prev_state = np.asarray(data["previous_state"], dtype=np.float64) if "previous_state" in data else None
        return cls(token, np.asarray(data["bev"], dtype=np.float32), np.asarray(data["ego"], dtype=np.float32),
                   np.asarray(data["reference"], dtype=np.float64), None if np.isnan(human).any() else human,
                   None if np.isnan(previous).any() else previous, initial,
                   None if prev_state is None or np.isnan(prev_state).any() else prev_state)


# ----------------------------------------------------------------------------------------------------------------
# Grid and distance helpers


def grid_points(grid: GridConfig) -> np.ndarray:
    """(H, W, 2) ego-frame cell centres."""
    ny, nx = grid.shape()
    xs = grid.x_range[0] + (np.arange(nx) + 0.5) * grid.resolution
    ys = grid.y_range[0] + (np.arange(ny) + 0.5) * grid.resolution
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1)


def _to_global(ego: np.ndarray, points: np.ndarray) -> np.ndarray:
    c, s = np.cos(ego[2]), np.sin(ego[2])
    return np.stack([ego[0] + c * points[..., 0] - s * points[..., 1],
                     ego[1] + s * points[..., 0] + c * points[..., 1]], axis=-1)


def _polygon(obj) -> shapely.Polygon:
    polygon = shapely.Polygon(obj.polygon, [h for h in obj.holes])
    # Repairing can turn a polygon into a collection, whose boundary GEOS refuses; keep valid ones as they are.
    return polygon if polygon.is_valid else shapely.make_valid(polygon).buffer(0)


def _boundary_points(geometry, step: float) -> np.ndarray:
    if geometry is None or geometry.is_empty:
        return np.zeros((0, 2))
    boundary = shapely.segmentize(geometry.boundary, step)
    return shapely.get_coordinates(boundary)


def _nearest_distance(points: np.ndarray, samples: np.ndarray, far: float) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each point to the nearest sample (and its index); ``far`` where there are no samples."""
    flat = points.reshape(-1, 2)
    if len(samples) == 0:
        return np.full(flat.shape[0], far), np.zeros(flat.shape[0], dtype=np.int64)
    dist, index = cKDTree(samples).query(flat, distance_upper_bound=np.inf)
    return dist, index


def _signed_field(geometry, points: np.ndarray, step: float, far: float) -> np.ndarray:
    """Signed distance to ``geometry`` (positive inside) at (H, W, 2) global points."""
    flat = points.reshape(-1, 2)
    if geometry is None or geometry.is_empty:
        return np.full(points.shape[:-1], -far)
    dist, _ = _nearest_distance(points, _boundary_points(geometry, step), far)
    inside = shapely.contains_xy(geometry, flat[:, 0], flat[:, 1])
    return np.where(inside, dist, -dist).reshape(points.shape[:-1])


def box_field(points: np.ndarray, boxes: np.ndarray, far: float) -> np.ndarray:
    """Signed distance (positive inside) to the union of oriented boxes (O, >=5: x, y, heading, length, width)
    at (..., 2) points, in the same frame."""
    if len(boxes) == 0:
        return np.full(points.shape[:-1], -far)
    flat = points.reshape(-1, 1, 2)
    dx = flat[..., 0] - boxes[None, :, 0]
    dy = flat[..., 1] - boxes[None, :, 1]
    c, s = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
    qx = np.abs(c * dx + s * dy) - boxes[:, 3] / 2.0
    qy = np.abs(-s * dx + c * dy) - boxes[:, 4] / 2.0
    outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
    inside = np.minimum(np.maximum(qx, qy), 0.0)
    signed = -(outside + inside)  # positive inside
    return signed.max(axis=1).reshape(points.shape[:-1])


# ----------------------------------------------------------------------------------------------------------------
# The raster


def _objects_in_ego_frame(case: ScoringCase, cfg: RasterConfig):
    """Objects present at t = 0 as ego-frame boxes at each of ``cfg.object_times_s``, split by motion class."""
    tracks = case.tracked_objects
    ego = case.ego.rear_axle
    present = tracks.present[0] if tracks.num_objects else np.zeros(0, dtype=bool)
    boxes0 = tracks.boxes[0, present] if tracks.num_objects else np.zeros((0, 6))
    vel0 = tracks.velocities[0, present] if tracks.num_objects else np.zeros((0, 2))
    types = tracks.types[present] if tracks.num_objects else np.zeros(0, dtype=np.int64)
    agent = np.array([ObjectType(int(t)).is_agent for t in types], dtype=bool)
    speed = np.hypot(vel0[:, 0], vel0[:, 1]) if len(vel0) else np.zeros(0)
    moving = agent & (speed > _STOPPED_SPEED)

    def local(boxes: np.ndarray) -> np.ndarray:
        out = boxes.copy()
        out[:, :3] = to_ego_frame(ego, boxes[:, :3])
        return out

    per_time = []
    indices = np.flatnonzero(present)
    if cfg.object_motion == "logged":
        for t in cfg.object_times_s:
            frame = min(int(round(t * 10)), tracks.num_frames - 1)
            boxes = tracks.boxes[frame, indices]
            keep = tracks.present[frame, indices] & moving
            per_time.append(local(boxes[keep]) if keep.any() else np.zeros((0, 6)))
    elif cfg.object_motion in ("constant_velocity", "lane_following"):
        future = forecast(case, boxes0[moving], vel0[moving], types[moving], cfg.object_times_s, cfg.object_motion)
        per_time = [local(boxes) for boxes in future]
    else:
        raise ValueError(f"object_motion must be 'lane_following', 'constant_velocity' or 'logged', "
                         f"got {cfg.object_motion!r}")
    stopped = local(boxes0[agent & ~moving])
    static = local(boxes0[~agent])
    return per_time, stopped, static


def render_raster(case: ScoringCase, cfg: RasterConfig) -> np.ndarray:
    """(13 + len(object_times_s), H, W) float32 raster of ``case`` (see the module docstring)."""
    grid = cfg.grid
    local_points = grid_points(grid)
    ego = case.ego.rear_axle
    points = _to_global(ego, local_points)
    flat = points.reshape(-1, 2)
    far, step = cfg.clip_m, cfg.densify_m
    shape = local_points.shape[:-1]

    drivable, lanes, route, intersections, limits, lane_ids = [], [], [], [], [], []
    for obj in case.map_objects:
        if obj.layer in _DRIVABLE_LAYERS:
            drivable.append(_polygon(obj))
        if obj.layer == MapLayer.INTERSECTION:
            intersections.append(_polygon(obj))
        if obj.layer in _LANE_LAYERS:
            poly = _polygon(obj)
            lanes.append(poly)
            limits.append(obj.speed_limit_mps or 0.0)
            lane_ids.append(obj.id)
            if obj.id in case.route_lane_ids:
                route.append(poly)

    def union(geoms):
        return shapely.union_all(geoms) if geoms else None

    channels = [_signed_field(union(drivable), points, step, far)]
    edge_samples = np.concatenate([_boundary_points(p, step) for p in lanes]) if lanes else np.zeros((0, 2))
    channels.append(_nearest_distance(points, edge_samples, far)[0].reshape(shape))
    count = np.zeros(flat.shape[0])
    limit = np.zeros(flat.shape[0])
    for poly, speed_limit in zip(lanes, limits):
        inside = shapely.contains_xy(poly, flat[:, 0], flat[:, 1])
        count += inside
        limit = np.where(inside, np.maximum(limit, speed_limit), limit)
    channels.append(np.minimum(count, 3.0).reshape(shape) * far / 4.0)  # 0, 1, 2, 3 lanes -> 0 .. 1.5 after scaling
    channels.append(_signed_field(union(route), points, step, far))
    channels.append(_signed_field(union(intersections), points, step, far))

    # Centerline: distance, arc length relative to the ego's projection, direction (ego frame).
    line = shapely.segmentize(shapely.LineString(case.centerline[:, :2]), step)
    samples = shapely.get_coordinates(line)
    seg = np.hypot(*np.diff(samples, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    direction = np.arctan2(*np.diff(samples, axis=0)[:, ::-1].T)
    direction = np.concatenate([direction, direction[-1:]]) - ego[2]
    dist, index = _nearest_distance(points, samples, far)
    s_ego = s[cKDTree(samples).query(ego[:2])[1]]
    channels.append(dist.reshape(shape))
    channels.append((s[index] - s_ego).reshape(shape) * far / cfg.progress_scale_m)
    channels.append(np.cos(direction[index]).reshape(shape) * far / 2.0)
    channels.append(np.sin(direction[index]).reshape(shape) * far / 2.0)

    red_ids = set(case.red_lane_connectors[0]) if case.red_lane_connectors else set()
    red = [p for p, i in zip(lanes, lane_ids) if i in red_ids and i in case.route_lane_ids]
    channels.append(_signed_field(union(red), points, step, far))
    channels.append(limit.reshape(shape) * far / 40.0)  # 20 m/s -> 0.5 after scaling

    per_time, stopped, static = _objects_in_ego_frame(case, cfg)
    channels.append(box_field(local_points, stopped, far))
    channels.append(box_field(local_points, static, far))
    for boxes in per_time:
        channels.append(box_field(local_points, boxes, far))
    raster = np.stack(channels).astype(np.float32)
    return np.clip(raster, -far, far) / (far / 2.0)


def raster_channels(cfg: RasterConfig) -> tuple[str, ...]:
    return MAP_CHANNELS + tuple(f"moving_agents@{t:g}s" for t in cfg.object_times_s)


# ----------------------------------------------------------------------------------------------------------------
# Ego status and reference trajectories


def ego_vector(case: ScoringCase, command: np.ndarray | None = None) -> np.ndarray:
    """Current velocity and acceleration, the three previous frames (pose in the current frame, speed,
    longitudinal acceleration) and the driving command (zeros when unknown): (EGO_DIM,)."""
    out = [case.ego.velocity / 10.0, case.ego.acceleration / 5.0]
    past = list(case.human_past[:-1])[-3:]
    while len(past) < 3:
        past.insert(0, case.human_past[0] if case.human_past else case.ego)
    for state in past:
        pose = to_ego_frame(case.ego.rear_axle, np.asarray(state.rear_axle, dtype=np.float64))
        out.append(np.array([pose[0] / 10.0, pose[1] / 10.0, pose[2], state.velocity[0] / 10.0,
                             state.acceleration[0] / 5.0]))
    out.append(np.zeros(4) if command is None else np.asarray(command, dtype=np.float64))
    vector = np.concatenate(out).astype(np.float32)
    assert vector.shape == (EGO_DIM,)
    return vector


def previous_in_current_frame(case: ScoringCase, max_offset_s: float = 0.55) -> np.ndarray | None:
    """(9, 3) expert's previous plan in the current ego frame: the previous ego pose (t = -0.5 s), the current
    pose (t = 0) and the anchor's first seven poses (t = 0.5 .. 3.5 s)."""
    plan = previous_plan(case, max_offset_s)
    if plan is None:
        return None
    _, index = plan
    prev_pose = to_ego_frame(case.ego.rear_axle, np.asarray(case.human_past[index].rear_axle, dtype=np.float64))
    anchor, _ = anchor_poses(case)
    return np.concatenate([prev_pose[None], np.zeros((1, 3)), anchor[:7]], axis=0)


def ego_states(case: ScoringCase, max_offset_s: float = 0.55) -> tuple[np.ndarray, np.ndarray | None]:
    """(current ego state, previous frame's ego state or None), both (11,) in the current ego frame."""
    from agents.rwm.rollout import initial_state, local_state

    index = previous_frame_index(case, max_offset_s)
    previous = None if index is None else local_state(case.ego.rear_axle, case.human_past[index])
    return initial_state(case), previous


def scene_inputs(case: ScoringCase, bev: np.ndarray, command: np.ndarray | None = None) -> SceneInputs:
    human = None if case.human_future is None else np.asarray(case.human_future, dtype=np.float64)
    current, previous = ego_states(case)
    plan = previous_in_current_frame(case)
    return SceneInputs(case.token, bev.astype(np.float32), ego_vector(case, command), reference_poses(case), human,
                       plan, current, previous if plan is not None else None)
