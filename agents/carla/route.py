"""Global plan -> next route node and driving command, from GNSS fixes.

CARLA converts map locations to GNSS with a transverse-Mercator-like formula around the map's geo reference
(leaderboard ``route_manipulation._location_to_gps``).  The reference is not given to SENSORS-track agents, so we
recover it from the first pair of the GPS and world-coordinate global plans, then invert the formula for every
fix.  All positions here are in CARLA's (left-handed) map frame.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .protocol import RoadOption

EARTH_RADIUS_EQUA = 6378137.0  # m, as in CARLA


def location_to_gps(x: float, y: float, lat_ref: float, lon_ref: float) -> tuple[float, float]:
    scale = math.cos(math.radians(lat_ref))
    mx = scale * lon_ref * math.pi * EARTH_RADIUS_EQUA / 180.0 + x
    my = scale * EARTH_RADIUS_EQUA * math.log(math.tan((90.0 + lat_ref) * math.pi / 360.0)) - y
    lon = mx * 180.0 / (math.pi * EARTH_RADIUS_EQUA * scale)
    lat = 360.0 * math.atan(math.exp(my / (EARTH_RADIUS_EQUA * scale))) / math.pi - 90.0
    return lat, lon


def gps_to_location(lat: float, lon: float, lat_ref: float, lon_ref: float) -> np.ndarray:
    scale = math.cos(math.radians(lat_ref))
    my = math.log(math.tan((lat + 90.0) * math.pi / 360.0)) * EARTH_RADIUS_EQUA * scale
    mx = lon * math.pi * EARTH_RADIUS_EQUA * scale / 180.0
    y = scale * EARTH_RADIUS_EQUA * math.log(math.tan((90.0 + lat_ref) * math.pi / 360.0)) - my
    x = mx - scale * lon_ref * math.pi * EARTH_RADIUS_EQUA / 180.0
    return np.array([x, y])


def solve_geo_reference(lat: float, lon: float, x: float, y: float, iterations: int = 50) -> tuple[float, float]:
    """(lat_ref, lon_ref) such that location_to_gps(x, y) == (lat, lon).

    lat_ref enters only through cos(lat_ref) in the y term, so a fixed-point iteration converges in a few steps
    for any map of realistic size (|y| << earth radius).
    """
    target = math.log(math.tan((90.0 + lat) * math.pi / 360.0))
    lat_ref = lat
    for _ in range(iterations):
        scale = math.cos(math.radians(lat_ref))
        new = 360.0 * math.atan(math.exp(target + y / (EARTH_RADIUS_EQUA * scale))) / math.pi - 90.0
        if abs(new - lat_ref) < 1e-13:
            lat_ref = new
            break
        lat_ref = new
    scale = math.cos(math.radians(lat_ref))
    lon_ref = lon - x * 180.0 / (math.pi * EARTH_RADIUS_EQUA * scale)
    return lat_ref, lon_ref


def _xy(transform: Any) -> tuple[float, float]:
    loc = getattr(transform, "location", transform)
    return float(loc.x), float(loc.y)


def downsample_route(route: Sequence[tuple[Any, Any]], sample_factor: float = 50.0) -> list[int]:
    """Indices kept by the leaderboard (``route_manipulation.downsample_route``): first, last, every RoadOption
    change (lane changes always), and one every ``sample_factor`` metres otherwise."""
    ids: list[int] = []
    prev = None
    dist = 0.0
    lane_changes = (RoadOption.CHANGELANELEFT, RoadOption.CHANGELANERIGHT)
    for i, (transform, option) in enumerate(route):
        cur = RoadOption.coerce(option)
        if prev is None or cur in lane_changes or (prev != cur and prev not in lane_changes):
            ids.append(i)
            dist = 0.0
        elif dist > sample_factor or i == len(route) - 1:
            ids.append(i)
            dist = 0.0
        else:
            (x0, y0), (x1, y1) = _xy(route[i - 1][0]), _xy(transform)
            dist += math.hypot(x1 - x0, y1 - y0)
        prev = cur
    return ids


@dataclass(frozen=True)
class RouteNode:
    position: np.ndarray  # (2,) CARLA map frame
    option: RoadOption


class RoutePlanner:
    """Bench2DriveZoo's ``RoutePlanner(4.0, 50.0)``: pop nodes once within ``min_distance`` and return the next.

    Only nodes up to ``max_distance`` of cumulative route length ahead are considered for popping, so a route
    that loops back near the car is not skipped.
    """

    def __init__(self, nodes: Sequence[RouteNode], min_distance: float = 4.0, max_distance: float = 50.0):
        if not nodes:
            raise ValueError("empty route")
        self.route: deque[RouteNode] = deque(nodes)
        self.min_distance = min_distance
        self.max_distance = max_distance

    def run_step(self, position: np.ndarray) -> RouteNode:
        if len(self.route) == 1:
            return self.route[0]
        to_pop = 0
        farthest = -np.inf
        cumulative = 0.0
        for i in range(1, len(self.route)):
            if cumulative > self.max_distance:
                break
            cumulative += float(np.linalg.norm(self.route[i].position - self.route[i - 1].position))
            d = float(np.linalg.norm(self.route[i].position - position))
            if d <= self.min_distance and d > farthest:
                farthest = d
                to_pop = i
        for _ in range(to_pop):
            if len(self.route) > 2:
                self.route.popleft()
        return self.route[1]

    def ahead(self, k: int) -> list[RouteNode]:
        return list(self.route)[1:1 + k]
