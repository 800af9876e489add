"""PDM-Closed (Dauner et al.), as NAVSIM's metric caching runs it: IDM proposals along the centerline and two
laterally offset copies (15 = 3 paths x 5 target-speed fractions), leading agents from a constant-velocity forecast
of the current objects and red on-route connectors, then a scoring step that picks the best proposal, which is
unrolled to 5 s and becomes the PDM reference trajectory.

Proposal generation and forecast are implemented here, following ``PDMGenerator`` / ``BatchIDMPolicy`` /
``PDMObservation`` / ``PDMPath`` step by step (including the leading-agent update every second step and the
leading-agent record carried over between proposals of a path). Selection takes a scoring callable: with
``evaluators.epdms`` available, ``epdms_selector`` simulates the proposals with NAVSIM's LQR tracker and scores them
like ``PDMScorer`` in the planner (batch-normalised progress, history comfort not used); otherwise
``geometric_selector`` is a dependency-free approximation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import shapely
import shapely.ops

from irlvla_bench.types import PACIFICA, VehicleParameters


def normalize_angle(a):
    return np.arctan2(np.sin(a), np.cos(a))


@dataclass(frozen=True)
class PDMClosedConfig:
    """``MetricCacheProcessor``'s PDM-Closed settings."""

    speed_limit_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    fallback_target_velocity: float = 15.0
    min_gap_to_lead_agent: float = 1.0
    headway_time: float = 1.5
    accel_max: float = 1.5
    decel_max: float = 3.0
    lateral_offsets: tuple[float, ...] = (-1.0, 1.0)
    proposal_poses: int = 40
    trajectory_poses: int = 50
    interval_s: float = 0.1
    map_radius: float = 100.0
    leading_agent_update_rate: int = 2
    observation_sample_res: int = 2
    acceleration_exponent: int = 10
    max_dynamic: dict = field(default_factory=lambda: {"vehicle": 50, "pedestrian": 25, "bicycle": 10})
    max_static: int = 50


NAVSIM_PDM_CLOSED = PDMClosedConfig()
AGENTS = ("vehicle", "pedestrian", "bicycle")


class PDMPath:
    """``PDMPath``: linear interpolation over arc length of (x, y, unwrapped heading)."""

    def __init__(self, discrete: np.ndarray):
        self.states = np.asarray(discrete, dtype=np.float64).copy()
        self.states[:, 2] = np.unwrap(self.states[:, 2])
        seg = np.linalg.norm(np.diff(self.states[:, :2], axis=0), axis=1)
        self.progress = np.cumsum(np.append(0.0, seg))
        self.linestring = shapely.LineString(self.states[:, :2])

    @property
    def length(self) -> float:
        return float(self.progress[-1])

    def project(self, x: float, y: float) -> float:
        return float(self.linestring.project(shapely.Point(x, y)))

    def interpolate(self, distances) -> np.ndarray:
        d = np.clip(np.atleast_1d(np.asarray(distances, dtype=np.float64)), 1e-5, self.length)
        hi = np.clip(np.searchsorted(self.progress, d, side="left"), 1, len(self.progress) - 1)
        lo = hi - 1
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (self.states[hi] - self.states[lo]) / (self.progress[hi] - self.progress[lo])[:, None]
            out = self.states[lo] + slope * (d - self.progress[lo])[:, None]
        out[:, 2] = normalize_angle(out[:, 2])
        out[np.isnan(out)] = 0.0
        return out

    def substring(self, start: float, end: float) -> shapely.LineString:
        start = float(np.clip(start, 0.0, self.length))
        end = float(np.clip(end, 0.0, self.length))
        inside = (start <= self.progress) & (self.progress <= end)
        coords = self.states[inside, :2]
        if len(coords) > 1:
            return shapely.LineString(coords)
        return shapely.ops.substring(self.linestring, start, end)


def parallel_path(discrete: np.ndarray, offset: float) -> np.ndarray:
    theta = discrete[:, 2] + np.pi / 2
    return np.column_stack([discrete[:, 0] + np.cos(theta) * offset, discrete[:, 1] + np.sin(theta) * offset,
                            discrete[:, 2]])


def box_corners(x, y, heading, length, width) -> np.ndarray:
    """(..., 4, 2) corners FL, RL, RR, FR of oriented boxes (nuPlan's ``all_corners`` order)."""
    c, s = np.cos(heading), np.sin(heading)
    hl, hw = np.asarray(length) / 2.0, np.asarray(width) / 2.0
    out = []
    for lon, lat in ((1, 1), (-1, 1), (-1, -1), (1, -1)):
        out.append(np.stack([x + lon * hl * c - lat * hw * s, y + lon * hl * s + lat * hw * c], axis=-1))
    return np.stack(out, axis=-2)


def ego_polygon(state: np.ndarray, vehicle: VehicleParameters = PACIFICA) -> shapely.Polygon:
    h = state[2]
    cx = state[0] + vehicle.rear_axle_to_center * np.cos(h)
    cy = state[1] + vehicle.rear_axle_to_center * np.sin(h)
    return shapely.Polygon(box_corners(cx, cy, h, vehicle.length, vehicle.width))


@dataclass
class Forecast:
    """``PDMObservation.update``: occupancy per 0.2 s sample (objects at constant velocity + red-light polygons)."""

    tokens: list[str]
    samples: list[tuple[np.ndarray, shapely.STRtree]]  # polygons and their tree per sample
    headings: dict[str, float]
    speeds: dict[str, float]
    is_agent: dict[str, bool]
    sample_res: int
    red_token: str = "red_light"
    collided: set[int] = field(default_factory=set)  # indices overlapping the ego at t = 0 (ignored as leaders)

    def at(self, time_idx: int) -> tuple[np.ndarray, shapely.STRtree]:
        return self.samples[time_idx // self.sample_res]


def build_forecast(objects: list[dict], ego_center: np.ndarray, red_polygons: dict[str, shapely.Polygon],
                   cfg: PDMClosedConfig, num_steps: int) -> Forecast:
    """Objects within ``map_radius`` of the ego centre, nearest first per category (NAVSIM's caps)."""
    dyn = {k: [] for k in cfg.max_dynamic}
    static = []
    for obj in objects:
        box = obj["box"]
        if np.hypot(box[0] - ego_center[0], box[1] - ego_center[1]) > cfg.map_radius:
            continue
        (dyn[obj["type"]] if obj["type"] in dyn else static).append(obj)

    def nearest(items: list[dict], cap: int) -> list[dict]:
        d = [np.hypot(o["box"][0] - ego_center[0], o["box"][1] - ego_center[1]) for o in items]
        return [items[i] for i in np.argsort(d, kind="quicksort")[:cap]]

    static_sel = nearest(static, cfg.max_static)
    dyn_sel = [o for k in cfg.max_dynamic for o in nearest(dyn[k], cfg.max_dynamic[k])]
    headings, speeds, is_agent = {}, {}, {}

    def corners(o: dict) -> np.ndarray:
        b = o["box"]
        c = box_corners(b[0], b[1], b[2], b[3], b[4])
        return np.vstack([c, c[:1]])  # NAVSIM replaces the centre row by the front-left corner to close the ring

    static_coords = [corners(o) for o in static_sel]
    dyn_coords = np.array([corners(o) for o in dyn_sel]).reshape(-1, 5, 2)
    dxy = np.zeros((len(dyn_sel), 2))
    for i, o in enumerate(dyn_sel):
        vx, vy = o["velocity"]
        speed = float(np.hypot(vx, vy))
        heading = o["box"][2]
        forward = abs(normalize_angle(heading - np.arctan2(vy, vx))) < np.pi / 2
        track_heading = heading if forward else normalize_angle(heading + np.pi)
        dxy[i] = [np.cos(track_heading) * speed, np.sin(track_heading) * speed]
    for o in static_sel + dyn_sel:
        headings[o["token"]] = o["box"][2]
        speeds[o["token"]] = float(np.hypot(*o["velocity"])) if o["type"] in AGENTS else 0.0
        is_agent[o["token"]] = o["type"] in AGENTS
    static_polys = list(shapely.polygons(np.array(static_coords))) if static_coords else []
    red_tokens = [f"red_light_{cid}" for cid in red_polygons]
    tokens = [o["token"] for o in static_sel] + [o["token"] for o in dyn_sel] + red_tokens
    samples = []
    for sample in range(0, num_steps + cfg.observation_sample_res, cfg.observation_sample_res):
        dyn_polys = list(shapely.polygons(dyn_coords + sample * cfg.interval_s * dxy[:, None])) if len(dyn_sel) else []
        polys = np.array(static_polys + dyn_polys + list(red_polygons.values()), dtype=object)
        samples.append((polys, shapely.STRtree(polys)))
    forecast = Forecast(tokens, samples, headings, speeds, is_agent, cfg.observation_sample_res)
    return forecast


def mark_collided(forecast: Forecast, ego_poly: shapely.Polygon) -> None:
    """``PDMObservation.update``: objects touching the ego now are 'collided' and never leading agents
    (a red-light polygon only when the ego is fully inside it)."""
    polys, tree = forecast.samples[0]
    for idx in tree.query(ego_poly, predicate="intersects"):
        if forecast.red_token in forecast.tokens[idx] and not ego_poly.within(polys[idx]):
            continue
        forecast.collided.add(int(idx))


@dataclass
class Proposals:
    states: np.ndarray  # (P, T+1, 3) x, y, heading at 0.1 s
    idm: np.ndarray  # (P, T+1, 2) progress, velocity
    lead: np.ndarray  # (P, T+1, 3) progress, velocity, rear length
    paths: list[PDMPath]
    lateral: np.ndarray  # (P,) path index
    longitudinal: np.ndarray  # (P,) policy index
    target_velocities: np.ndarray
    corridors: dict[int, shapely.Geometry] = field(default_factory=dict)


class ProposalGenerator:
    """``PDMGenerator`` + ``BatchIDMPolicy`` for one planning call."""

    def __init__(self, cfg: PDMClosedConfig = NAVSIM_PDM_CLOSED, vehicle: VehicleParameters = PACIFICA):
        self.cfg = cfg
        self.vehicle = vehicle

    def target_velocities(self, speed_limit: float | None) -> np.ndarray:
        fractions = np.asarray(self.cfg.speed_limit_fractions)
        base = speed_limit if speed_limit is not None else self.cfg.fallback_target_velocity
        return fractions * base

    def generate(self, ego_rear: np.ndarray, ego_vx: float, centerline: np.ndarray, speed_limit: float | None,
                 forecast: Forecast) -> Proposals:
        cfg = self.cfg
        paths = [PDMPath(centerline)] + [PDMPath(parallel_path(centerline, off)) for off in cfg.lateral_offsets]
        n_long = len(cfg.speed_limit_fractions)
        n = len(paths) * n_long
        steps = cfg.trajectory_poses + 1
        props = Proposals(np.zeros((n, steps, 3)), np.zeros((n, steps, 2)), np.zeros((n, steps, 3)), paths,
                          np.repeat(np.arange(len(paths)), n_long), np.tile(np.arange(n_long), len(paths)),
                          self.target_velocities(speed_limit))
        for lat in range(len(paths)):
            batch = np.nonzero(props.lateral == lat)[0]
            progress = paths[lat].project(ego_rear[0], ego_rear[1])
            props.idm[batch, 0] = [progress, ego_vx]
            props.states[batch, 0] = paths[lat].interpolate([progress])[0]
            for t in range(1, cfg.proposal_poses + 1):
                self._step(props, batch, t, forecast)
        return props

    def extend(self, props: Proposals, best: int, forecast: Forecast) -> np.ndarray:
        """``generate_trajectory``: unroll the chosen proposal to ``trajectory_poses``."""
        batch = np.array([best])
        for t in range(self.cfg.proposal_poses + 1, self.cfg.trajectory_poses + 1):
            self._step(props, batch, t, forecast)
        return props.states[best].copy()

    def _step(self, props: Proposals, batch: np.ndarray, t: int, forecast: Forecast) -> None:
        self._leading_agents(props, batch, t, forecast)
        self._propagate(props, batch, t)
        path = props.paths[props.lateral[batch[0]]]
        props.states[batch, t] = path.interpolate(props.idm[batch, t, 0])

    def _corridor(self, props: Proposals, proposal: int) -> shapely.Geometry:
        lat = int(props.lateral[proposal])
        if lat not in props.corridors:
            start = props.idm[proposal, 0, 0]
            end = start + abs(float(np.max(props.target_velocities))) * self.cfg.trajectory_poses * self.cfg.interval_s
            line = props.paths[lat].substring(start, end)
            props.corridors[lat] = line.buffer(self.vehicle.width / 2, cap_style="square")
        return props.corridors[lat]

    def _leading_agents(self, props: Proposals, batch: np.ndarray, t: int, forecast: Forecast) -> None:
        if t % self.cfg.leading_agent_update_rate != 0:
            props.lead[batch, t] = props.lead[batch, t - 1]
            return
        first = int(batch[0])
        path = props.paths[props.lateral[first]]
        polys, tree = forecast.at(t)
        hits = tree.query(self._corridor(props, first), predicate="intersects")
        progress_of: dict[int, float] = {}
        for idx in hits:
            if int(idx) in forecast.collided:
                continue
            c = polys[idx].centroid
            progress_of[int(idx)] = float(path.linestring.project(c))
        record = np.zeros(3)  # carried over between proposals, as in NAVSIM
        for p in batch:
            ego_progress = props.idm[p, t - 1, 0]
            ahead = [i for i, prog in progress_of.items() if prog > ego_progress]
            if ahead:
                ego_poly = ego_polygon(props.states[p, t - 1], self.vehicle)
                dists = [ego_poly.distance(polys[i]) for i in ahead]
                k = int(np.argmin(dists))
                token = forecast.tokens[ahead[k]]
                record[0] = ego_progress + dists[k]
                if forecast.red_token not in token:
                    if forecast.is_agent.get(token, False):
                        rel = normalize_angle(forecast.headings[token] - props.states[p, t - 1, 2])
                        record[1] = forecast.speeds[token] * np.cos(rel)
                    else:
                        record[1] = 0.0
            else:
                record[0] = path.length
                record[2] = self.vehicle.length / 2
            props.lead[p, t] = record

    def _propagate(self, props: Proposals, batch: np.ndarray, t: int) -> None:
        cfg = self.cfg
        x, v = props.idm[batch, t - 1, 0], props.idm[batch, t - 1, 1]
        x_lead, v_lead, l_rear = props.lead[batch, t, 0], props.lead[batch, t, 1], props.lead[batch, t, 2]
        v0 = props.target_velocities[props.longitudinal[batch]]
        s_star = cfg.min_gap_to_lead_agent + v * cfg.headway_time + v * (v - v_lead) / (
            2 * np.sqrt(cfg.accel_max * cfg.decel_max))
        s_alpha = np.maximum(x_lead - x - l_rear, cfg.min_gap_to_lead_agent)
        with np.errstate(divide="ignore", invalid="ignore"):
            v_dot = cfg.accel_max * (1 - (v / v0) ** cfg.acceleration_exponent - (s_star / s_alpha) ** 2)
        v_dot = np.clip(v_dot, -cfg.decel_max, cfg.accel_max)
        props.idm[batch, t, 0] = x + cfg.interval_s * v
        props.idm[batch, t, 1] = v + cfg.interval_s * v_dot


# ----------------------------------------------------------------------------------------------------------------
# Selection

Selector = Callable[["PlanningProblem"], np.ndarray]


@dataclass
class PlanningProblem:
    """What a selector needs: the scoring-case dict of the frame (map, route, centerline, ego, past) with the
    forecast as tracked objects and red lights, and the proposals as 10 Hz global states."""

    case: dict
    states: np.ndarray  # (P, 41, 3)
    forecast_objects: list[list[dict]]  # 41 frames
    red_ids: list[str]


def _batch_progress_score(mult: np.ndarray, progress: np.ndarray, ttc: np.ndarray, lk: np.ndarray,
                          threshold: float = 5.0) -> np.ndarray:
    """``PDMScorer._aggregate_pdm_scores`` with history comfort 1 (the planner passes no past trajectory)."""
    masked = progress * mult
    norm = float(np.max(masked)) if len(masked) else 0.0
    ep = np.clip(progress / norm, 0.0, 1.0) if norm > threshold else np.ones(len(progress))
    weighted = (5.0 * ep + 5.0 * ttc + 2.0 * lk + 2.0 * 1.0) / 14.0
    return mult * weighted


def to_ego_poses(states: np.ndarray, ego: np.ndarray) -> np.ndarray:
    """Global (..., 3) poses -> ego frame (rear axle at t = 0)."""
    c, s = np.cos(ego[2]), np.sin(ego[2])
    dx, dy = states[..., 0] - ego[0], states[..., 1] - ego[1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, normalize_angle(states[..., 2] - ego[2])], axis=-1)


def _planning_case(problem: PlanningProblem) -> dict:
    case = dict(problem.case)
    # Consecutive duplicate vertices (lane joints) change neither projections nor distances; dropping them
    # keeps the planning call independent of how the evaluator treats zero-length segments.
    line = np.asarray(case["centerline"], dtype=np.float64)
    keep = np.concatenate([[True], np.any(np.diff(line[:, :2], axis=0) != 0.0, axis=1)])
    case["centerline"] = line[keep].tolist()
    ego = np.asarray(case["ego"]["rear_axle"], dtype=np.float64)
    poses = to_ego_poses(problem.states[:, 5::5], ego)  # 0.5 .. 4.0 s
    case.update(
        scene_type="synthetic", human_future=None, tracked_objects=problem.forecast_objects,
        red_lane_connectors=[list(problem.red_ids)] * len(problem.forecast_objects),
        proposals=[{"id": f"p{i}", "poses": p.tolist()} for i, p in enumerate(poses)],
    )
    # Progress is re-normalised over the batch, so the reference only has to be valid.
    case["pdm_reference"] = {"states": problem.states[-1].tolist(), "interval_s": 0.1}
    return case


def epdms_selector(problem: PlanningProblem) -> np.ndarray:
    """Track the 10 Hz proposal states themselves (as ``PDMSimulator`` does) with the evaluator's tracker and
    score them with its metrics against the planner's forecast."""
    from evaluators.epdms.planning import score_target_states

    from irlvla_bench.io.scoring_case import parse_case

    case = parse_case(_planning_case(problem), source="<pdm-closed planning>")
    scores = score_target_states(case, problem.states[:, :, :3])
    return _batch_progress_score(scores.multiplicative, scores.progress_m, scores.time_to_collision_within_bound,
                                 scores.lane_keeping)


def geometric_selector(problem: PlanningProblem) -> np.ndarray:
    """Dependency-free approximation: proposals taken as driven (no tracker), collision with the forecast,
    drivable area (corners on roadblocks, lanes, intersections, car parks), red lights, batch progress."""
    case = problem.case
    drivable = shapely.unary_union([shapely.Polygon(o["polygon"]) for o in case["map"]["objects"]
                                    if o["layer"] in ("roadblock", "lane", "lane_connector", "intersection", "carpark_area")])
    red_polys = shapely.unary_union([shapely.Polygon(o["polygon"]) for o in case["map"]["objects"]
                                     if o["id"] in set(problem.red_ids)]) if problem.red_ids else None
    n, steps = problem.states.shape[:2]
    mult = np.ones(n)
    for p in range(n):
        for t in range(steps):
            poly = ego_polygon(problem.states[p, t])
            frame = problem.forecast_objects[min(t, len(problem.forecast_objects) - 1)]
            if t > 0 and any(poly.intersects(shapely.Polygon(box_corners(*o["box"][:5]))) for o in frame):
                mult[p] = 0.0
                break
            corners = shapely.points(np.asarray(poly.exterior.coords)[:4])
            if not np.all(shapely.contains(drivable, corners) | shapely.touches(drivable, corners)):
                mult[p] = 0.0
                break
            if t > 0 and red_polys is not None and not red_polys.is_empty and poly.intersects(red_polys):
                if not ego_polygon(problem.states[p, 0]).intersects(red_polys):
                    mult[p] = 0.0
                    break
    line = shapely.LineString(np.asarray(case["centerline"])[:, :2])
    start = np.array([line.project(shapely.Point(s[0, 0], s[0, 1])) for s in problem.states])
    end = np.array([line.project(shapely.Point(s[-1, 0], s[-1, 1])) for s in problem.states])
    progress = np.clip(end - start, 0.0, None)
    return _batch_progress_score(mult, progress, np.ones(n), np.ones(n))


def default_selector() -> Selector:
    """The exact evaluator ships in the same distribution; ``geometric_selector`` stays available by name for
    users who want the dependency-free approximation, but is never substituted silently for a failure."""
    return epdms_selector


@dataclass(frozen=True)
class PDMClosedResult:
    trajectory: np.ndarray  # (51, 3) global rear-axle poses at 0.1 s
    proposals: np.ndarray  # (15, 41, 3)
    scores: np.ndarray  # (15,)
    best: int


def forecast_frames(forecast_objects: list[dict], cfg: PDMClosedConfig, num_frames: int = 41) -> list[list[dict]]:
    """The forecast as scoring-case frames (sample-and-hold at the 0.2 s observation resolution)."""
    frames = []
    for f in range(num_frames):
        t = (f // cfg.observation_sample_res) * cfg.observation_sample_res * cfg.interval_s
        frame = []
        for o in forecast_objects:
            box = list(o["box"])
            if o["type"] in AGENTS:
                vx, vy = o["velocity"]
                speed = float(np.hypot(vx, vy))
                heading = box[2]
                forward = abs(normalize_angle(heading - np.arctan2(vy, vx))) < np.pi / 2
                th = heading if forward else normalize_angle(heading + np.pi)
                box[0] += np.cos(th) * speed * t
                box[1] += np.sin(th) * speed * t
            frame.append({**o, "box": box})
        frames.append(frame)
    return frames


def run_pdm_closed(case: dict, current_objects: list[dict], red_polygons: dict[str, shapely.Polygon],
                   speed_limit: float | None, selector: Selector | None = None,
                   cfg: PDMClosedConfig = NAVSIM_PDM_CLOSED) -> PDMClosedResult:
    """Plan from the case's ego state along its centerline; ``case`` needs ego, map, route, centerline, past."""
    ego = np.asarray(case["ego"]["rear_axle"], dtype=np.float64)
    vx = float(case["ego"]["velocity"][0])
    centre = ego[:2] + PACIFICA.rear_axle_to_center * np.array([np.cos(ego[2]), np.sin(ego[2])])
    forecast = build_forecast(current_objects, centre, red_polygons, cfg, cfg.trajectory_poses)
    mark_collided(forecast, ego_polygon(ego))
    gen = ProposalGenerator(cfg)
    props = gen.generate(ego, vx, np.asarray(case["centerline"], dtype=np.float64), speed_limit, forecast)
    states41 = props.states[:, : cfg.proposal_poses + 1].copy()
    selected_objects = [o for o in current_objects if o["token"] in set(forecast.tokens)]
    problem = PlanningProblem(case, states41, forecast_frames(selected_objects, cfg, cfg.proposal_poses + 1),
                              list(red_polygons))
    scores = np.asarray((selector or default_selector())(problem), dtype=np.float64)
    best = int(np.argmax(scores))
    trajectory = gen.extend(props, best, forecast)
    return PDMClosedResult(trajectory, states41, scores, best)
