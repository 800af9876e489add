"""Traffic simulation on the lane graph at 10 Hz: IDM vehicles and cyclists, a rule-based ego (IDM along a
random route, lane changes, red lights, junction reservations), pedestrians on sidewalks, static objects and
parked cars. The ego's simulated path is the log's human trajectory.

Vehicles stop for red lights and reserve junction connectors before entering, so the logs are collision-free
without the simulation having to resolve contacts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from irlvla_bench.types import PACIFICA
from irlvla_bench.world.config import TrafficConfig
from irlvla_bench.world.geometry import interpolate_pose, wrap
from irlvla_bench.world.roadnet import TURN_LEFT, TURN_RIGHT, RoadNetwork, SimLane

DT = 0.1
LATERAL_ACCEL = 2.5  # comfortable lateral acceleration used to slow down for curves [m/s^2]

# (name, length range, width range, height range)
_DIMS = {
    "vehicle": ((4.2, 5.2), (1.8, 2.1), (1.5, 1.9)),
    "bicycle": ((1.7, 1.9), (0.6, 0.8), (1.6, 1.8)),
    "pedestrian": ((0.5, 0.8), (0.5, 0.7), (1.6, 1.9)),
    "traffic_cone": ((0.35, 0.45), (0.35, 0.45), (0.6, 0.8)),
    "barrier": ((1.8, 2.4), (0.4, 0.6), (0.9, 1.1)),
    "czone_sign": ((0.5, 0.7), (0.5, 0.7), (1.3, 1.7)),
    "generic_object": ((0.8, 1.4), (0.8, 1.4), (0.8, 1.2)),
}


def _dims(kind: str, rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(rng.uniform(*r)) for r in _DIMS[kind])  # type: ignore[return-value]


@dataclass
class Mover:
    """A vehicle, cyclist or the ego following lanes; ``s`` is the box centre's arc length on ``lane``."""

    token: str
    kind: str
    lane: str
    s: float
    v: float
    length: float
    width: float
    height: float
    v_factor: float
    plan: list[str] = field(default_factory=list)
    reserved: str | None = None  # connector this mover holds a junction reservation for
    a: float = 0.0
    lat0: float = 0.0  # lateral offset at the start of a lane change [m]
    lat_t: float = 0.0  # time since the lane change started [s]
    lat_T: float = 0.0  # lane-change duration (0 = none)


@dataclass
class Walker:
    token: str
    path: int
    s: float
    v: float
    length: float
    width: float
    height: float


@dataclass
class Static:
    token: str
    kind: str
    box: np.ndarray  # (x, y, heading, length, width, height)


@dataclass
class Snapshot:
    """The world at one 10 Hz step (global frame)."""

    t: float
    ego: np.ndarray  # (x, y, heading) of the rear axle
    ego_speed: float
    ego_accel: float
    ego_lane: str
    tokens: list[str]
    kinds: list[str]
    boxes: np.ndarray  # (N, 6) x, y, heading, length, width, height (centre)
    velocities: np.ndarray  # (N, 2)
    red: set[str]


class TrafficSim:
    def __init__(self, net: RoadNetwork, cfg: TrafficConfig, rng: np.random.Generator, token_fn):
        self.net = net
        self.cfg = cfg
        self.rng = rng
        self.token = token_fn
        self.t = 0.0
        self.lanes = net.lanes
        self.plain_lanes = [lid for lid, lane in net.lanes.items() if not lane.is_connector]
        self._v_curve = {lid: self._curve_speed(lane) for lid, lane in net.lanes.items()}
        self._conflicts = self._connector_conflicts()
        self.reservations: dict[str, str] = {}  # connector -> mover token
        self.movers: list[Mover] = []
        self.walkers: list[Walker] = []
        self.statics: list[Static] = []
        self.ego_blocks: list[str] = []  # roadblocks the ego has driven through, in order
        self._spawn()

    # ---------------------------------------------------------------------------------------------- setup

    @staticmethod
    def _curve_speed(lane: SimLane) -> float:
        if len(lane.hdg) < 3:
            return np.inf
        dh = np.abs(wrap(np.diff(lane.hdg[:-1])))
        ds = np.maximum(np.diff(lane.s[:-1]), 1e-6)
        kappa = float(np.max(dh / ds)) if len(dh) else 0.0
        return float(np.sqrt(LATERAL_ACCEL / kappa)) if kappa > 1e-4 else np.inf

    def _connector_conflicts(self) -> dict[str, set[str]]:
        """Connectors of the same junction whose surfaces overlap (except when they leave the same lane)."""
        out: dict[str, set[str]] = {}
        for junction in self.net.junctions:
            conns = [c for cs in junction.connectors_by_arm.values() for c in cs]
            for a in conns:
                la = self.lanes[a]
                out[a] = set()
                for b in conns:
                    lb = self.lanes[b]
                    if a == b or la.predecessors == lb.predecessors:
                        continue
                    # Adjacent parallel connectors only touch; crossing or merging ones overlap.
                    if la.successors == lb.successors or la.polygon.intersection(lb.polygon).area > 0.5:
                        out[a].add(b)
        return out

    def _free(self, lane: str, s: float, length: float, gap: float) -> bool:
        for m in self.movers:
            if m.lane == lane and abs(m.s - s) < (m.length + length) / 2 + gap:
                return False
        return True

    def _spawn_mover(self, kind: str, length: float, width: float, height: float, lanes: list[str],
                     v_factor: float) -> Mover | None:
        for _ in range(50):
            lid = lanes[int(self.rng.integers(len(lanes)))]
            lane = self.lanes[lid]
            if lane.length < length + 12:
                continue
            s = float(self.rng.uniform(length / 2 + 4, lane.length - length / 2 - 8))
            if self._free(lid, s, length, 10.0):
                v0 = self._target_speed(lane, v_factor)
                return Mover(self.token(), kind, lid, s, float(v0 * self.rng.uniform(0.4, 0.9)), length, width,
                             height, v_factor)
        return None

    def _spawn(self) -> None:
        cfg, rng = self.cfg, self.rng
        ego_len = PACIFICA.length
        ego = self._spawn_mover("ego", ego_len, PACIFICA.width, PACIFICA.height, self.plain_lanes,
                                float(rng.uniform(0.85, 1.0)))
        assert ego is not None, "no room for the ego"
        ego.token = "ego"
        self.movers.append(ego)
        self.ego_blocks.append(self.lanes[ego.lane].block_id)
        for _ in range(int(rng.integers(cfg.vehicles[0], cfg.vehicles[1] + 1))):
            m = self._spawn_mover("vehicle", *_dims("vehicle", rng), self.plain_lanes,
                                  float(rng.uniform(*cfg.speed_factor)))
            if m:
                self.movers.append(m)
        right_lanes = [lid for lid in self.plain_lanes if self.lanes[lid].right is None]
        for _ in range(int(rng.integers(cfg.cyclists[0], cfg.cyclists[1] + 1))):
            m = self._spawn_mover("bicycle", *_dims("bicycle", rng), right_lanes, 1.0)
            if m:
                m.v_factor = -float(rng.uniform(4.0, 6.5))  # negative: an absolute target speed
                self.movers.append(m)
        paths = self.net.sidewalks
        for _ in range(int(rng.integers(cfg.pedestrians[0], cfg.pedestrians[1] + 1))):
            p = int(rng.integers(len(paths)))
            plen = float(np.sum(np.hypot(*np.diff(paths[p], axis=0).T)))
            speed = 0.0 if rng.uniform() < 0.2 else float(rng.uniform(0.8, 1.6)) * (1 if rng.uniform() < 0.5 else -1)
            self.walkers.append(Walker(self.token(), p, float(rng.uniform(0, plen)), speed, *_dims("pedestrian", rng)))
        kinds = ["traffic_cone", "barrier", "czone_sign", "generic_object"]
        for _ in range(int(rng.integers(cfg.static_objects[0], cfg.static_objects[1] + 1))):
            kind = kinds[int(rng.integers(len(kinds)))]
            length, width, height = _dims(kind, rng)
            edge = self.net.road_edges[int(rng.integers(len(self.net.road_edges)))]
            i = int(rng.integers(1, len(edge) - 1))
            d = edge[i + 1] - edge[i - 1]
            h = float(np.arctan2(d[1], d[0]))
            right = np.array([np.sin(h), -np.cos(h)])  # road edges run with the road on their left
            xy = edge[i] + right * (width / 2 + 0.4)
            self.statics.append(Static(self.token(), kind, np.array([xy[0], xy[1], h, length, width, height])))
        for cp in self.net.carparks:
            n_cars = int(rng.integers(cfg.parked_cars[0], cfg.parked_cars[1] + 1))
            placed: list[shapely.Polygon] = []
            minx, miny, maxx, maxy = cp.bounds
            for _ in range(n_cars * 20):
                if len(placed) >= n_cars:
                    break
                x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
                h = float(rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2]) + rng.normal(0, 0.05))
                length, width, height = _dims("vehicle", rng)
                box = _box_polygon(x, y, h, length, width)
                if cp.contains(box.buffer(0.5)) and not any(box.buffer(0.8).intersects(p) for p in placed):
                    placed.append(box)
                    self.statics.append(Static(self.token(), "vehicle", np.array([x, y, h, length, width, height])))

    # ---------------------------------------------------------------------------------------------- dynamics

    def _target_speed(self, lane: SimLane, v_factor: float) -> float:
        base = -v_factor if v_factor < 0 else lane.speed_limit * v_factor
        return float(min(base, self._v_curve[lane.id]))

    def _extend_plan(self, m: Mover, n: int = 3) -> None:
        last = m.plan[-1] if m.plan else m.lane
        while len(m.plan) < n:
            succ = self.lanes[last].successors
            if not succ:
                break
            if m.kind == "bicycle":
                # Cyclists avoid left turns across traffic.
                options = [c for c in succ if self.lanes[c].turn != TURN_LEFT] or succ
            else:
                options = succ
            last = options[int(self.rng.integers(len(options)))]
            m.plan.append(last)

    def _leader(self, m: Mover, lookahead: float, red: set[str]) -> tuple[float, float]:
        """(gap to the obstacle ahead [m], its speed) along the mover's lane sequence; (inf, v) if none."""
        best_gap, best_v = np.inf, m.v
        path = [m.lane] + m.plan
        dist_before = -m.s  # path distance from the mover's centre to the start of path[k]
        first_junction = True
        for k, lid in enumerate(path):
            if dist_before > lookahead:
                break
            for o in self._on_lane.get(lid, ()):
                if o is m:
                    continue
                d = dist_before + o.s
                if d <= 0:
                    continue
                gap = d - (m.length + o.length) / 2
                if gap < best_gap:
                    best_gap, best_v = gap, o.v
            nxt = path[k + 1] if k + 1 < len(path) else None
            cur = self.lanes[lid]
            if nxt is not None and not cur.is_connector and self.lanes[nxt].is_connector:
                front_to_line = dist_before + cur.length - m.length / 2
                if front_to_line > -0.5:
                    if nxt in red:
                        # Waiting at a red light must not hold the junction for the other approaches.
                        if m.reserved == nxt and front_to_line > 0.0:
                            self.reservations.pop(nxt, None)
                            m.reserved = None
                        must_stop = True
                    elif first_junction:
                        must_stop = not self._may_enter(m, nxt, front_to_line)
                    else:
                        must_stop = False  # reservations are asked for one junction at a time
                    stoppable = front_to_line > m.v**2 / (2 * self.cfg.red_light_decel) - 0.5 or m.v < 1.0
                    if must_stop and stoppable and front_to_line - 0.5 < best_gap:
                        best_gap, best_v = front_to_line - 0.5, 0.0
                first_junction = False
            dist_before += cur.length
        return best_gap, best_v

    def _may_enter(self, m: Mover, connector: str, front_to_line: float) -> bool:
        """Junction reservation: enter only when no conflicting connector is held by someone else."""
        if self.reservations.get(connector) == m.token or m.reserved == connector:
            return True
        if m.reserved is not None:
            return False  # still clearing the previous junction
        if front_to_line > 6.0 + 1.5 * m.v:
            return True  # too early to ask; the check repeats every step
        for other in self._conflicts.get(connector, ()):
            holder = self.reservations.get(other)
            if holder is not None and holder != m.token:
                return False
        self.reservations[connector] = m.token
        m.reserved = connector
        return True

    def _release(self, m: Mover) -> None:
        """Drop the reservation once the mover's rear has left the connector."""
        if m.reserved is None:
            return
        if m.lane == m.reserved or (m.plan and m.plan[0] == m.reserved):
            return
        lane = self.lanes[m.lane]
        if not lane.is_connector and m.s - m.length / 2 > 0.5:
            self.reservations.pop(m.reserved, None)
            m.reserved = None

    def _idm(self, m: Mover, v0: float, gap: float, v_lead: float) -> float:
        cfg = self.cfg
        a_max, b = cfg.idm_accel, cfg.idm_decel
        free = 1.0 - (m.v / max(v0, 0.1)) ** 4
        if np.isfinite(gap):
            s_star = cfg.idm_min_gap + m.v * cfg.idm_headway_s + m.v * (m.v - v_lead) / (2 * np.sqrt(a_max * b))
            acc = a_max * (free - (max(s_star, 0.0) / max(gap, 0.1)) ** 2)
        else:
            acc = a_max * free
        return float(np.clip(acc, -8.0, a_max))

    def _curve_brake(self, m: Mover) -> float:
        """Deceleration needed to reach the next lanes' curve / speed-limit speed in time."""
        acc = np.inf
        dist = self.lanes[m.lane].length - m.s
        for lid in m.plan[:2]:
            lane = self.lanes[lid]
            v_next = self._target_speed(lane, m.v_factor)
            if m.v > v_next:
                acc = min(acc, -(m.v**2 - v_next**2) / (2 * max(dist, 1.0)))
            dist += lane.length
        return acc

    def _ego_lane_logic(self, m: Mover) -> None:
        """Mandatory lane changes toward the lane that serves the chosen movement, plus discretionary ones."""
        lane = self.lanes[m.lane]
        if lane.is_connector or m.lat_T > 0:
            return
        remaining = lane.length - m.s
        if not m.plan or not self.lanes[m.plan[0]].is_connector:
            return
        wanted = self.lanes[m.plan[0]]
        neighbour = None
        if wanted.turn == TURN_LEFT and lane.left is not None:
            neighbour = lane.left
        elif wanted.turn == TURN_RIGHT and lane.right is not None:
            neighbour = lane.right
        elif remaining > 60 and self.rng.uniform() < self.cfg.ego_lane_change_prob * DT / 4.0:
            neighbour = lane.left if (lane.left and self.rng.uniform() < 0.5) else lane.right
        if neighbour is None:
            return
        duration = float(self.rng.uniform(*self.cfg.ego_lane_change_s))
        if remaining < m.v * duration + 10:
            return
        target = self.lanes[neighbour]
        x, y, h = interpolate_pose(lane.s, lane.pts, lane.hdg, m.s)
        d = np.hypot(target.pts[:, 0] - x, target.pts[:, 1] - y)
        i = int(np.argmin(d))
        s_new = float(target.s[i])
        for o in self._on_lane.get(neighbour, ()):
            if -18.0 < o.s - s_new < 25.0:
                return  # no gap
        left_n = np.array([-np.sin(target.hdg[i]), np.cos(target.hdg[i])])
        if m.reserved is not None:
            self.reservations.pop(m.reserved, None)
            m.reserved = None
        m.lat0 = float(np.dot(np.array([x, y]) - target.pts[i], left_n))
        m.lat_t, m.lat_T = 0.0, duration
        m.lane, m.s = neighbour, s_new
        m.plan = []
        self._extend_plan(m)
        if self.lanes[m.plan[0]].turn != wanted.turn:
            # The new lane's movement choice must match the one that motivated the change.
            options = [c for c in target.successors if self.lanes[c].turn == wanted.turn]
            if options:
                m.plan = [options[int(self.rng.integers(len(options)))]]
                self._extend_plan(m)

    def lateral_offset(self, m: Mover) -> tuple[float, float]:
        """(offset, d offset / dt) of a lane change in progress: smoothstep from ``lat0`` to 0."""
        if m.lat_T <= 0:
            return 0.0, 0.0
        u = min(m.lat_t / m.lat_T, 1.0)
        shape = 1 - (u * u * (3 - 2 * u))
        dshape = -(6 * u - 6 * u * u) / m.lat_T
        return m.lat0 * shape, m.lat0 * dshape

    def step(self) -> None:
        red = self.red_connectors()
        self._on_lane: dict[str, list[Mover]] = {}
        for m in self.movers:
            self._on_lane.setdefault(m.lane, []).append(m)
        for m in self.movers:
            self._extend_plan(m)
            if m.kind == "ego":
                self._ego_lane_logic(m)
        for m in self.movers:
            lane = self.lanes[m.lane]
            v0 = self._target_speed(lane, m.v_factor)
            gap, v_lead = self._leader(m, max(40.0, m.v * 5.0 + 15.0), red)
            acc = min(self._idm(m, v0, gap, v_lead), self._curve_brake(m))
            if m.kind == "ego":
                # Human-like smoothness: bounded jerk except when braking hard for an obstacle.
                jerk_cap = 2.5 * DT if acc > -3.0 else 8.0 * DT
                acc = float(np.clip(acc, m.a - jerk_cap, m.a + jerk_cap))
            m.a = float(acc)
        for m in self.movers:
            v_new = max(0.0, m.v + m.a * DT)
            m.s += 0.5 * (m.v + v_new) * DT
            m.a = (v_new - m.v) / DT
            m.v = v_new
            if m.lat_T > 0:
                m.lat_t += DT
                if m.lat_t >= m.lat_T:
                    m.lat_T = 0.0
            while m.s > self.lanes[m.lane].length and m.plan:
                m.s -= self.lanes[m.lane].length
                m.lane = m.plan.pop(0)
                if m.kind == "ego":
                    block = self.lanes[m.lane].block_id
                    if block != self.ego_blocks[-1]:
                        self.ego_blocks.append(block)
            self._release(m)
        for w in self.walkers:
            path = self.net.sidewalks[w.path]
            plen = float(np.sum(np.hypot(*np.diff(path, axis=0).T)))
            w.s += w.v * DT
            if w.s < 0 or w.s > plen:
                w.v = -w.v
                w.s = float(np.clip(w.s, 0, plen))
        self.t += DT

    def red_connectors(self) -> set[str]:
        red: set[str] = set()
        for j in self.net.junctions:
            red |= j.red_connectors(self.t)
        return red

    # ---------------------------------------------------------------------------------------------- output

    def mover_pose(self, m: Mover) -> tuple[float, float, float]:
        lane = self.lanes[m.lane]
        x, y, h = interpolate_pose(lane.s, lane.pts, lane.hdg, m.s)
        if m.lat_T > 0:
            off, doff = self.lateral_offset(m)
            x += -np.sin(h) * off
            y += np.cos(h) * off
            h = h + np.arctan2(doff, max(m.v, 0.5))
        return float(x), float(y), float(h)

    def snapshot(self) -> Snapshot:
        tokens, kinds, boxes, vels = [], [], [], []
        ego_pose = None
        ego = None
        for m in self.movers:
            x, y, h = self.mover_pose(m)
            if m.kind == "ego":
                ego = m
                back = PACIFICA.rear_axle_to_center
                ego_pose = np.array([x - back * np.cos(h), y - back * np.sin(h), h])
                continue
            tokens.append(m.token)
            kinds.append(m.kind)
            boxes.append([x, y, h, m.length, m.width, m.height])
            vels.append([m.v * np.cos(h), m.v * np.sin(h)])
        for w in self.walkers:
            path = self.net.sidewalks[w.path]
            s_cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(path, axis=0).T))])
            hd = np.arctan2(np.diff(path[:, 1]), np.diff(path[:, 0]))
            hd = np.append(hd, hd[-1])
            x, y, h = interpolate_pose(s_cum, path, hd, w.s)
            if w.v < 0:
                h = h + np.pi
            tokens.append(w.token)
            kinds.append("pedestrian")
            boxes.append([x, y, float(wrap(h)), w.length, w.width, w.height])
            vels.append([abs(w.v) * np.cos(h), abs(w.v) * np.sin(h)])
        for st in self.statics:
            tokens.append(st.token)
            kinds.append(st.kind)
            boxes.append(list(st.box))
            vels.append([0.0, 0.0])
        assert ego is not None and ego_pose is not None
        return Snapshot(self.t, ego_pose, ego.v, ego.a, ego.lane, tokens, kinds,
                        np.asarray(boxes, dtype=np.float64).reshape(-1, 6), np.asarray(vels, dtype=np.float64).reshape(-1, 2),
                        self.red_connectors())

    def ego(self) -> Mover:
        return self.movers[0]

    def ego_path_ahead(self, distance: float) -> np.ndarray:
        """Points along the ego's planned lanes up to ``distance`` ahead (for the driving command)."""
        m = self.ego()
        pts = []
        lane = self.lanes[m.lane]
        sel = lane.s >= m.s
        pts.append(lane.pts[sel])
        total = lane.length - m.s
        for lid in m.plan:
            if total > distance:
                break
            pts.append(self.lanes[lid].pts)
            total += self.lanes[lid].length
        return np.vstack([p for p in pts if len(p)]) if any(len(p) for p in pts) else lane.pts[-1:]


def _box_polygon(x: float, y: float, h: float, length: float, width: float) -> shapely.Polygon:
    c, s = np.cos(h), np.sin(h)
    dx = np.array([c, s]) * length / 2
    dy = np.array([-s, c]) * width / 2
    p = np.array([x, y])
    return shapely.Polygon([p + dx + dy, p + dx - dy, p - dx - dy, p - dx + dy])
