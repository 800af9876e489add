"""Route handling of NAVSIM's PDM planner, on our ``NuPlanMap``: route loading, route correction (off-route start,
missing links, loops), the drivable-area objects around the ego, the starting lane and the Dijkstra centerline.

Each function mirrors one piece of ``navsim/planning/simulation/planner/pdm_planner`` (``abstract_pdm_planner.py``,
``utils/route_utils.py``, ``utils/graph_search/*``, ``observation/pdm_occupancy_map.py``), including its tie-breaking,
because the centerline and the route lanes feed progress, lane keeping and driving-direction metrics directly.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import shapely

from irlvla_bench.io.nuplan_map import Block, LaneEdge, NuPlanMap


def normalize_angle(a):
    return np.arctan2(np.sin(a), np.cos(a))


class RouteError(ValueError):
    """The route cannot be resolved on the map (NAVSIM would crash on it)."""


def load_route(nmap: NuPlanMap, roadblock_ids) -> list[str]:
    """De-duplicated route ids (order kept); each must be a roadblock or a roadblock connector."""
    ids = list(dict.fromkeys(roadblock_ids))
    for rid in ids:
        if rid not in nmap.blocks:
            raise RouteError(f"route id {rid!r} is neither a roadblock nor a roadblock connector of {nmap.location}")
    return ids


def route_lane_ids(nmap: NuPlanMap, route: list[str]) -> list[str]:
    out: dict[str, None] = {}
    for rid in route:
        for lane in nmap.blocks[rid].lane_ids:
            out[lane] = None
    return list(out)


def _current_roadblock_candidates(nmap: NuPlanMap, pose: np.ndarray, route: set[str],
                                  heading_thresh: float = np.pi / 4, displacement_thresh: float = 3.0):
    x, y, h = pose
    near = nmap.proximal(x, y, 1.0, ("roadblock", "roadblock_connector"))
    candidates: list[Block] = [nmap.blocks[i] for i in near["roadblock"] + near["roadblock_connector"]]
    if not candidates:
        for layer in ("roadblock", "roadblock_connector"):
            rid, _ = nmap.nearest(x, y, layer)
            if rid is not None:
                candidates.append(nmap.blocks[rid])
    on_route, on_route_err, others, others_err = [], [], [], []
    block_disp = []
    for block in candidates:
        lane_disp = np.inf
        for lid in block.lane_ids:
            path = nmap.lanes[lid].baseline
            dists = np.hypot(path[:, 0] - x, path[:, 1] - y)
            i = int(np.argmin(dists))
            heading_err = abs(normalize_angle(path[i, 2] - h))
            disp = dists[i]
            if disp < lane_disp:
                lane_disp = disp
            if heading_err < heading_thresh and disp < displacement_thresh:
                if block.id in route:
                    on_route.append(block)
                    on_route_err.append(disp)
                else:
                    others.append(block)
                    others_err.append(disp)
        block_disp.append(lane_disp)
    if on_route:
        return on_route[int(np.argmin(on_route_err))], on_route
    if others:
        return others[int(np.argmin(others_err))], others
    return candidates[int(np.argmin(block_disp))], candidates


def _bfs(nmap: NuPlanMap, start: str, targets: list[str], max_depth: int, forward: bool) -> tuple[list[str], bool]:
    """NAVSIM's ``BreadthFirstSearchRoadBlock`` (level markers, parents keyed by id and depth)."""
    queue: deque = deque([start, None])
    parent: dict[str, str | None] = {f"{start}_1": None}
    end, end_depth, depth, found = start, 1, 1, False
    target_set = set(targets)
    while queue:
        current = queue.popleft()
        if depth > max_depth:
            break
        if current is None:
            depth += 1
            queue.append(None)
            if queue[0] is None:
                break
            continue
        if current in target_set and depth <= max_depth:
            end, end_depth, found = current, depth, True
            break
        block = nmap.blocks[current]
        for nxt in (block.outgoing if forward else block.incoming):
            queue.append(nxt)
            parent[f"{nxt}_{depth + 1}"] = current
            end, end_depth = nxt, depth + 1
    path = [end]
    d = end_depth
    while parent.get(f"{path[-1]}_{d}") is not None:
        path.append(parent[f"{path[-1]}_{d}"])
        d -= 1
    if forward:
        path.reverse()
    return path, found


def _remove_loops(nmap: NuPlanMap, route: list[str]) -> list[str]:
    seen: list[shapely.Polygon] = []
    for idx, rid in enumerate(route):
        block = nmap.blocks[rid]
        if not block.is_connector:
            continue
        if not seen:
            seen.append(block.polygon)
            continue
        tree = shapely.STRtree(seen)
        for j in tree.query(block.polygon):
            if seen[j].intersection(block.polygon).area > 1.0:
                return route[:idx]
        seen.append(block.polygon)
    return route


def correct_route(nmap: NuPlanMap, rear_axle: np.ndarray, route: list[str],
                  depth_backward: int = 15, depth_forward: int = 30) -> list[str]:
    """NAVSIM's ``route_roadblock_correction`` for the ego pose (rear axle x, y, heading)."""
    start_block, start_candidates = _current_roadblock_candidates(nmap, rear_axle, set(route))
    candidate_ids = [b.id for b in start_candidates]
    route = list(route)
    if start_block.id not in route:
        path, found = _bfs(nmap, route[0], candidate_ids, depth_backward, forward=False)
        if found:
            route[:0] = path[:-1]
        else:
            path, found = _bfs(nmap, start_block.id, route[:3], depth_forward, forward=True)
            if found:
                end_idx = int(np.argmax(np.array(route) == path[-1]))
                route = route[end_idx + 1:]
                route[:0] = path
    inserts: dict[int, list[str]] = {}
    for i in range(len(route) - 1):
        if route[i] in nmap.blocks[route[i + 1]].incoming:
            continue
        path, found = _bfs(nmap, route[i], [route[i + 1]], depth_forward, forward=True)
        if found and path and len(path) >= 3:
            inserts[i] = path[1:-1]
    offset = 1
    for i, path in inserts.items():
        route[i + offset:i + offset] = path
        offset += len(path)
    return _remove_loops(nmap, route)


@dataclass(frozen=True)
class DrivableObjects:
    """``PDMDrivableMap.from_simulation``: ids and layers in NAVSIM's order."""

    ids: tuple[str, ...]
    layers: tuple[str, ...]

    def polygons(self, nmap: NuPlanMap) -> list[shapely.Polygon]:
        return [nmap.polygon(layer, i) for i, layer in zip(self.ids, self.layers)]


def drivable_objects(nmap: NuPlanMap, center_xy: np.ndarray, radius: float) -> DrivableObjects:
    near = nmap.proximal(float(center_xy[0]), float(center_xy[1]), radius,
                         ("roadblock", "roadblock_connector", "intersection", "carpark_area"))
    ids: list[str] = []
    layers: list[str] = []
    for rid in near["roadblock"]:
        ids.append(rid)
        layers.append("roadblock")
    for layer, lane_layer in (("roadblock", "lane"), ("roadblock_connector", "lane_connector")):
        for rid in near[layer]:
            for lid in nmap.blocks[rid].lane_ids:
                ids.append(lid)
                layers.append(lane_layer)
    for layer in ("intersection", "carpark_area"):
        for aid in near[layer]:
            ids.append(aid)
            layers.append(layer)
    return DrivableObjects(tuple(ids), tuple(layers))


def starting_lane(nmap: NuPlanMap, drivable: DrivableObjects, route_lanes: list[str], rear_axle: np.ndarray,
                  center: np.ndarray, footprint: shapely.Polygon) -> LaneEdge | None:
    """``AbstractPDMPlanner._get_starting_lane``."""
    point = shapely.Point(rear_axle[0], rear_axle[1])
    route_set = set(route_lanes)
    polys = drivable.polygons(nmap)
    tree = shapely.STRtree(polys)
    hits = tree.query(point, predicate="intersects")
    candidates, errors = [], []
    for idx in hits:
        lid = drivable.ids[idx]
        if lid in route_set:
            lane = nmap.lanes[lid]
            d = np.hypot(lane.baseline[:, 0] - rear_axle[0], lane.baseline[:, 1] - rear_axle[1])
            err = abs(normalize_angle(lane.baseline[int(np.argmin(d)), 2] - rear_axle[2]))
            candidates.append(lane)
            errors.append(err)
    if candidates:
        return candidates[int(np.argmin(np.abs(errors)))]
    best, best_d = None, np.inf
    center_pt = shapely.Point(center[0], center[1])
    for lid in route_lanes:
        lane = nmap.lanes[lid]
        if lane.polygon.contains(center_pt):
            return lane
        d = lane.polygon.distance(footprint)
        if d < best_d:
            best, best_d = lane, d
    return best


def _baseline_length(lane: LaneEdge) -> float:
    return float(shapely.LineString(lane.baseline[:, :2]).length)


def dijkstra(nmap: NuPlanMap, start: LaneEdge, candidates: list[str], target_block: str) -> tuple[list[str], bool]:
    """NAVSIM's lane-graph ``Dijkstra`` (cost = baseline length; deepest cheapest path if the goal is missed)."""
    cand = set(candidates)
    queue = [start.id]
    dist = [1.0]
    depth = [1]
    frontier = [start.id]
    parent: dict[str, str | None] = {start.id: None}
    expanded, expanded_dist, expanded_depth = [], [], []
    expanded_set: set[str] = set()
    end, found = start.id, False
    while queue:
        d, idx = min((val, i) for i, val in enumerate(dist))
        current = queue[idx]
        cur_depth = depth[idx]
        del dist[idx], queue[idx], frontier[idx], depth[idx]
        if nmap.lanes[current].roadblock_id == target_block:
            end, found = current, True
            break
        expanded.append(current)
        expanded_set.add(current)
        expanded_dist.append(d)
        expanded_depth.append(cur_depth)
        for nxt in nmap.lanes[current].outgoing:
            if nxt not in cand:
                continue
            alt = d + _baseline_length(nmap.lanes[nxt])
            if nxt not in expanded_set and nxt not in frontier:
                parent[nxt] = current
                queue.append(nxt)
                frontier.append(nxt)
                dist.append(alt)
                depth.append(cur_depth + 1)
            elif nxt in frontier:
                j = frontier.index(nxt)
                if alt < dist[j]:
                    parent[nxt] = current
                    dist[j] = alt
                    depth[j] = cur_depth + 1
    if not found:
        max_depth = max(expanded_depth)
        at_max = [i for i, dd in enumerate(expanded_depth) if dd == max_depth]
        _, k = min((expanded_dist[i], n) for n, i in enumerate(at_max))
        end = expanded[at_max[k]]
    path = [end]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    path.reverse()
    return path, found


def centerline(nmap: NuPlanMap, start: LaneEdge, route: list[str], route_lanes: list[str],
               search_depth: int = 30) -> tuple[np.ndarray, list[str]]:
    """Concatenated discrete baselines (duplicates kept) of the Dijkstra lane sequence from ``start``."""
    ids = np.array(route)
    start_idx = int(np.argmax(ids == start.roadblock_id))
    window = route[start_idx:start_idx + search_depth]
    lanes, _ = dijkstra(nmap, start, route_lanes, window[-1])
    return np.vstack([nmap.lanes[lid].baseline for lid in lanes]), lanes
