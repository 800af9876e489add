"""Procedural road network: two four-way and two T intersections joined by straight roads and curved loops,
multi-lane in both directions, lane connectors for every legal movement, signals, stop lines, crosswalks,
sidewalks and a car park. Produces both the nuPlan map layers and the lane graph the traffic simulation drives on.

Layout (local frame before the random rotation; A, B four-way; C, E T junctions)::

      C ------- E
    ( |         | )      loops: A.west -> C.west, B.east -> E.east, A.south -> B.south
      A ------- B
       \\_______/
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from irlvla_bench.world.config import WorldConfig
from irlvla_bench.world.geometry import arc_length, bezier, headings, offset, rounded_path, resample, wrap

_DIRS = {"E": (1.0, 0.0), "W": (-1.0, 0.0), "N": (0.0, 1.0), "S": (0.0, -1.0)}
TURN_STRAIGHT, TURN_LEFT, TURN_RIGHT = 1, 2, 3


@dataclass
class SimLane:
    """A lane or lane connector as the simulation sees it."""

    id: str
    is_connector: bool
    block_id: str
    pts: np.ndarray  # (M, 2) baseline in driving direction
    s: np.ndarray  # (M,) arc length
    hdg: np.ndarray  # (M,) heading to next vertex
    speed_limit: float
    polygon: shapely.Polygon
    successors: list[str] = field(default_factory=list)
    predecessors: list[str] = field(default_factory=list)
    lane_index: int = 0
    left: str | None = None  # neighbouring lane of the same roadblock
    right: str | None = None
    node: int = -1  # connectors: intersection node; lanes: node they end at
    arm: int = -1  # connectors: incoming arm index at ``node``
    turn: int = TURN_STRAIGHT

    @property
    def length(self) -> float:
        return float(self.s[-1])


@dataclass
class Junction:
    node: int
    fid: int
    polygon: shapely.Polygon
    arms: list[str]  # incoming roadblock ids, one per arm
    connectors_by_arm: dict[str, list[str]]
    phases: list[list[str]]  # arms green together (opposite approaches); conflicts inside a phase are
    # resolved by the traffic simulation's junction reservations
    signalised: bool
    green_s: float
    clearance_s: float
    offset_s: float

    def red_connectors(self, t: float) -> set[str]:
        """Two-phase signal: each phase green for ``green_s``, then an all-red clearance."""
        if not self.signalised:
            return set()
        period = self.green_s + self.clearance_s
        cycle = period * len(self.phases)
        phase_t = (t + self.offset_s) % cycle
        phase = int(phase_t // period)
        in_green = (phase_t - phase * period) < self.green_s
        green_arms = set(self.phases[phase]) if in_green else set()
        red = set()
        for arm_id in self.arms:
            if arm_id not in green_arms:
                red.update(self.connectors_by_arm[arm_id])
        return red


@dataclass
class RoadNetwork:
    location: str
    lanes: dict[str, SimLane]
    blocks: dict[str, dict]
    junctions: list[Junction]
    sidewalks: list[np.ndarray]  # pedestrian paths (polyline centre of each walkway)
    carparks: list[shapely.Polygon]
    road_edges: list[np.ndarray]  # outer road edges (for roadside static objects)
    layers: dict[str, list[dict]]
    drivable: shapely.Geometry  # union of roadblocks, intersections, carparks (rendering, sanity checks)
    markings: list[tuple[np.ndarray, bool]]  # (polyline, solid) lane markings for rendering

    def all_connector_ids(self) -> list[str]:
        return [lid for lid, lane in self.lanes.items() if lane.is_connector]


class _Fids:
    def __init__(self, start: int):
        self.next = start

    def __call__(self) -> int:
        self.next += 1
        return self.next


def _polygon(left: np.ndarray, right: np.ndarray) -> shapely.Polygon:
    poly = shapely.Polygon(np.vstack([left, right[::-1]]))
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
        if poly.geom_type != "Polygon":
            poly = max(getattr(poly, "geoms", [poly]), key=lambda g: g.area)
            if poly.geom_type != "Polygon":
                poly = shapely.convex_hull(poly)
    return poly


def build_network(cfg: WorldConfig, rng: np.random.Generator) -> RoadNetwork:
    rc = cfg.roads
    w = rc.lane_width
    lx = rng.uniform(*rc.block_x)
    ly = rng.uniform(*rc.block_y)
    nodes = {"A": (0.0, 0.0), "B": (lx, 0.0), "C": (0.0, ly), "E": (lx, ly)}
    node_index = {name: i for i, name in enumerate(nodes)}
    # (u, arm at u, v, arm at v, shape)
    roads = [
        ("A", "E", "B", "W", "straight"),
        ("C", "E", "E", "W", "straight"),
        ("A", "N", "C", "S", "straight"),
        ("B", "N", "E", "S", "straight"),
        ("A", "S", "B", "S", "loop"),
        ("A", "W", "C", "W", "loop"),
        ("B", "E", "E", "E", "loop"),
    ]
    theta = rng.uniform(-np.pi, np.pi) if rc.rotate else 0.0
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    origin = np.asarray(rc.origin, dtype=np.float64)

    def to_world(p: np.ndarray) -> np.ndarray:
        return np.asarray(p, dtype=np.float64) @ rot.T + origin

    lanes_fwd = [int(rng.integers(1, rc.max_lanes + 1)) for _ in roads]
    lanes_bwd = [int(rng.integers(1, rc.max_lanes + 1)) for _ in roads]
    speed = [float(rng.choice(rc.speed_limits)) for _ in roads]
    half_width = {n: 0.0 for n in nodes}
    for (u, _, v, _, _), nf, nb in zip(roads, lanes_fwd, lanes_bwd):
        for n in (u, v):
            half_width[n] = max(half_width[n], max(nf, nb) * w)
    radius = {n: half_width[n] + rc.junction_margin for n in nodes}

    fid = _Fids(rc.first_fid)
    layers: dict[str, list[dict]] = {k: [] for k in (
        "lanes_polygons", "lane_groups_polygons", "lane_connectors", "gen_lane_connectors_scaled_width_polygons",
        "lane_group_connectors", "baseline_paths", "boundaries", "stop_polygons", "intersections", "carpark_areas",
        "crosswalks", "walkways", "traffic_lights")}
    lanes: dict[str, SimLane] = {}
    blocks: dict[str, dict] = {}
    sidewalks: list[np.ndarray] = []
    road_edges: list[np.ndarray] = []
    markings: list[tuple[np.ndarray, bool]] = []
    # per node: list of (arm direction name, incoming block id, outgoing block id)
    node_arms: dict[str, list[tuple[str, str | None, str | None]]] = {n: [] for n in nodes}

    def boundary(line: np.ndarray, kind: int) -> int:
        bid = fid()
        layers["boundaries"].append({"fid": bid, "geometry": shapely.LineString(line), "boundary_type_fid": kind})
        return bid

    def add_group(centre: np.ndarray, n: int, speed_limit: float, end_node: str) -> str:
        """A roadblock of ``n`` lanes on the right of ``centre`` (driving direction)."""
        gid = fid()
        edges = [offset(centre, -i * w) for i in range(n + 1)]
        bounds = [boundary(e, 2 if i in (0, n) else 1) for i, e in enumerate(edges)]
        group_poly = _polygon(edges[0], edges[n])
        layers["lane_groups_polygons"].append({"fid": gid, "geometry": group_poly, "left_boundary_fid": bounds[0],
                                               "right_boundary_fid": bounds[n]})
        lane_ids = []
        for i in range(n):
            lid = fid()
            base = offset(centre, -(i + 0.5) * w)
            poly = _polygon(edges[i], edges[i + 1])
            layers["lanes_polygons"].append({"fid": lid, "geometry": poly, "lane_fid": lid, "lane_group_fid": gid,
                                             "speed_limit_mps": speed_limit, "lane_index": i,
                                             "left_boundary_fid": bounds[i], "right_boundary_fid": bounds[i + 1],
                                             "width": w})
            layers["baseline_paths"].append({"fid": fid(), "geometry": shapely.LineString(base), "lane_fid": lid,
                                             "lane_connector_fid": None})
            lanes[str(lid)] = SimLane(str(lid), False, str(gid), base, arc_length(base), headings(base), speed_limit,
                                      poly, lane_index=i, node=node_index[end_node])
            lane_ids.append(str(lid))
        for i, lid in enumerate(lane_ids):
            lanes[lid].left = lane_ids[i - 1] if i > 0 else None
            lanes[lid].right = lane_ids[i + 1] if i + 1 < n else None
        for i in range(1, n):
            markings.append((edges[i], False))
        blocks[str(gid)] = {"lane_ids": lane_ids, "is_connector": False, "polygon": group_poly, "incoming": [],
                            "outgoing": []}
        return str(gid)

    for ri, (u, du, v, dv, shape) in enumerate(roads):
        pu = np.asarray(nodes[u]) + radius[u] * np.asarray(_DIRS[du])
        pv = np.asarray(nodes[v]) + radius[v] * np.asarray(_DIRS[dv])
        if shape == "straight":
            local = resample(np.vstack([pu, pv]), rc.sample_step)
        else:
            depth = rng.uniform(*rc.loop_depth)
            corners = np.vstack([pu, pu + depth * np.asarray(_DIRS[du]), pv + depth * np.asarray(_DIRS[dv]), pv])
            local = rounded_path(corners, rng.uniform(*rc.loop_radius), rc.sample_step)
        centre = to_world(local)
        fwd = add_group(centre, lanes_fwd[ri], speed[ri], v)
        bwd = add_group(centre[::-1].copy(), lanes_bwd[ri], speed[ri], u)
        node_arms[u].append((du, bwd, fwd))
        node_arms[v].append((dv, fwd, bwd))
        markings.append((centre, True))
        right_d, left_d = lanes_fwd[ri] * w, lanes_bwd[ri] * w
        right_edge, left_edge = offset(centre, -right_d), offset(centre, left_d)
        road_edges.extend([right_edge, left_edge[::-1].copy()])
        sw = rc.sidewalk_width
        layers["walkways"].append({"fid": fid(), "geometry": _polygon(right_edge, offset(centre, -right_d - sw))})
        layers["walkways"].append({"fid": fid(), "geometry": _polygon(offset(centre, left_d + sw), left_edge)})
        sidewalks.extend([offset(centre, -right_d - sw / 2), offset(centre, left_d + sw / 2)])

    junctions: list[Junction] = []
    for name, arms in node_arms.items():
        node_pt = to_world(np.asarray(nodes[name])[None])[0]
        jid = fid()
        conn_polys = []
        conns_by_arm: dict[str, list[str]] = {}
        arm_order = []
        for a_dir, in_block, _ in arms:
            arm_order.append(in_block)
            conns_by_arm[in_block] = []
            in_lanes = blocks[in_block]["lane_ids"]
            # Stop lines at the end of each incoming lane; the connectors leaving that lane reference them.
            stop_fids = {}
            for lid in in_lanes:
                lane = lanes[lid]
                sid = fid()
                end, h = lane.pts[-1], lane.hdg[-1]
                fwd_v, left_v = np.array([np.cos(h), np.sin(h)]), np.array([-np.sin(h), np.cos(h)])
                quad = [end + left_v * w / 2, end - left_v * w / 2, end - left_v * w / 2 - fwd_v, end + left_v * w / 2 - fwd_v]
                layers["stop_polygons"].append({"fid": sid, "geometry": shapely.Polygon(quad), "stop_polygon_type_fid": 2})
                stop_fids[lid] = sid
                layers["traffic_lights"].append({"fid": fid(), "geometry": shapely.Point(*(end + left_v * w / 2)),
                                                 "ori_mean_yaw": float(h + np.pi), "lane_connector_fid": 0})
            for b_dir, _, out_block in arms:
                if b_dir == a_dir:
                    continue
                out_lanes = blocks[out_block]["lane_ids"]
                turn_angle = float(wrap(lanes[out_lanes[0]].hdg[0] - lanes[in_lanes[0]].hdg[-1]))
                if abs(turn_angle) < np.pi / 6:
                    turn = TURN_STRAIGHT
                    pairs = [(i, min(i, len(out_lanes) - 1)) for i in range(len(in_lanes))]
                elif turn_angle > 0:
                    turn = TURN_LEFT
                    pairs = [(0, 0)]
                else:
                    turn = TURN_RIGHT
                    pairs = [(len(in_lanes) - 1, len(out_lanes) - 1)]
                gcid = fid()
                group_lane_ids = []
                edges_left, edges_right = [], []
                for i_in, i_out in pairs:
                    src, dst = lanes[in_lanes[i_in]], lanes[out_lanes[i_out]]
                    base = bezier(src.pts[-1], src.hdg[-1], dst.pts[0], dst.hdg[0], rc.sample_step)
                    left, right = offset(base, w / 2), offset(base, -w / 2)
                    # End edges exactly on the lane mouths, so connector and lane surfaces only touch.
                    for k, (pt, h) in ((0, (src.pts[-1], src.hdg[-1])), (-1, (dst.pts[0], dst.hdg[0]))):
                        n_vec = np.array([-np.sin(h), np.cos(h)]) * (w / 2)
                        left[k], right[k] = pt + n_vec, pt - n_vec
                    poly = _polygon(left, right)
                    if not poly.is_valid or poly.geom_type != "Polygon":
                        poly = shapely.LineString(base).buffer(w / 2, cap_style="flat")
                    edges_left.append(left)
                    edges_right.append(right)
                    cid = fid()
                    speed_limit = min(src.speed_limit, dst.speed_limit)
                    layers["lane_connectors"].append({
                        "fid": cid, "geometry": shapely.LineString(base), "exit_lane_fid": int(src.id),
                        "entry_lane_fid": int(dst.id), "lane_group_connector_fid": gcid, "speed_limit_mps": speed_limit,
                        "traffic_light_stop_line_fids": str(stop_fids[src.id]), "exit_lane_group_fid": int(in_block),
                        "entry_lane_group_fid": int(out_block), "intersection_fid": jid, "turn_type_fid": turn})
                    layers["gen_lane_connectors_scaled_width_polygons"].append(
                        {"fid": fid(), "geometry": poly, "lane_connector_fid": cid})
                    layers["baseline_paths"].append({"fid": fid(), "geometry": shapely.LineString(base),
                                                     "lane_fid": None, "lane_connector_fid": cid})
                    lane = SimLane(str(cid), True, str(gcid), base, arc_length(base), headings(base), speed_limit, poly,
                                   lane_index=i_in, node=node_index[name], arm=len(arm_order) - 1, turn=turn)
                    lane.predecessors.append(src.id)
                    lane.successors.append(dst.id)
                    src.successors.append(lane.id)
                    dst.predecessors.append(lane.id)
                    lanes[lane.id] = lane
                    group_lane_ids.append(lane.id)
                    conns_by_arm[in_block].append(lane.id)
                    conn_polys.append(poly)
                # Roadblock connector polygon from the outer edges of its outermost connectors (same vertex arrays,
                # so no float slivers); falls back to a union when the edges cross.
                gpoly = _polygon(edges_left[0], edges_right[-1])
                if len(pairs) > 1:
                    union = shapely.unary_union([lanes[c].polygon for c in group_lane_ids] + [gpoly])
                    if union.geom_type == "Polygon" and union.is_valid:
                        gpoly = shapely.Polygon(union.exterior)
                layers["lane_group_connectors"].append({"fid": gcid, "geometry": gpoly, "from_lane_group_fid": int(in_block),
                                                        "to_lane_group_fid": int(out_block), "intersection_fid": jid})
                blocks[str(gcid)] = {"lane_ids": group_lane_ids, "is_connector": True, "polygon": gpoly,
                                     "incoming": [in_block], "outgoing": [out_block]}
                blocks[in_block]["outgoing"].append(str(gcid))
                blocks[out_block]["incoming"].append(str(gcid))
        # Intersection surface: hull of every connector plus the arm mouths, so a car on a connector is on-road.
        jpoly = shapely.convex_hull(shapely.unary_union(conn_polys))
        # Never overlap the roadblocks: cut them away (contains is strict, touching is fine).
        jpoly = jpoly.difference(shapely.unary_union([blocks[b]["polygon"] for _, i, o in arms for b in (i, o)]))
        if jpoly.geom_type != "Polygon":
            jpoly = max(jpoly.geoms, key=lambda g: g.area)
        jpoly = shapely.Polygon(jpoly.exterior)
        layers["intersections"].append({"fid": jid, "geometry": jpoly, "intersection_type_fid": 1 if len(arms) == 4 else 2,
                                        "is_mini": 0})
        signalised = len(arms) == 4 or rng.uniform() < rc.t_junction_signal_prob
        axis = {"E": 0, "W": 0, "N": 1, "S": 1}
        phases = [[i for d, i, _ in arms if axis[d] == k] for k in (0, 1)]
        phases = [p for p in phases if p]
        junctions.append(Junction(node_index[name], jid, jpoly, arm_order, conns_by_arm, phases, signalised,
                                  rng.uniform(*rc.green_s), rc.clearance_s, rng.uniform(0, 60.0)))
        # Crosswalks across each arm, just outside the intersection.
        for a_dir, in_block, out_block in arms:
            lane_in = lanes[blocks[in_block]["lane_ids"][0]]
            end, h = lane_in.pts[-1], lane_in.hdg[-1]
            fwd_v = np.array([np.cos(h), np.sin(h)])
            left_v = np.array([-np.sin(h), np.cos(h)])
            n_in = len(blocks[in_block]["lane_ids"])
            n_out = len(blocks[out_block]["lane_ids"])
            centre_pt = end + left_v * w / 2  # the centre line at the mouth
            a = centre_pt - fwd_v * 1.0 + left_v * (n_out * w)
            b = centre_pt - fwd_v * 1.0 - left_v * (n_in * w)
            cw = shapely.Polygon([a, b, b - fwd_v * 3.0, a - fwd_v * 3.0])
            layers["crosswalks"].append({"fid": fid(), "geometry": cw, "is_marked": 1})

    # Car park beside the C-E road (left side, i.e. outside the block), touching its roadblock edge.
    carparks = []
    for (u, du, v, dv, shape), nb in zip(roads, lanes_bwd):
        if (u, v) == ("C", "E"):
            pu = np.asarray(nodes[u]) + radius[u] * np.asarray(_DIRS[du])
            pv = np.asarray(nodes[v]) + radius[v] * np.asarray(_DIRS[dv])
            span = pv[0] - pu[0]
            x0, x1 = pu[0] + 0.3 * span, pu[0] + 0.7 * span
            y0 = pu[1] + nb * w
            local = np.array([[x0, y0], [x1, y0], [x1, y0 + rc.carpark_depth], [x0, y0 + rc.carpark_depth]])
            cp = shapely.Polygon(to_world(local))
            carparks.append(cp)
            layers["carpark_areas"].append({"fid": fid(), "geometry": cp, "heading": float(theta + np.pi / 2)})

    drivable = shapely.unary_union([b["polygon"] for b in blocks.values() if not b["is_connector"]]
                                   + [j.polygon for j in junctions] + carparks)
    return RoadNetwork(cfg.location, lanes, blocks, junctions, sidewalks, carparks, road_edges, layers, drivable, markings)
