"""Simple projective renderer for the eight cameras and the lidar: rays hit a flat ground plane coloured from a
top-down raster of the map (road, lane markings, sidewalks, car parks, stop lines coloured by their light) and
3D boxes of the objects. Crude, but it carries the signal a vision model needs: lanes, free space, agents, lights.
"""

from __future__ import annotations

import numpy as np
import shapely
from numba import njit

from irlvla_bench.io.sensors import LIDAR_TO_EGO_TRANSLATION, CameraModel
from irlvla_bench.world.geometry import arc_length
from irlvla_bench.world.roadnet import RoadNetwork

GRASS, ROAD, CARPARK, SIDEWALK, WHITE, YELLOW, CROSSWALK, STOP = range(8)
_PALETTE = np.array([
    [72, 110, 58], [88, 88, 92], [112, 106, 100], [165, 162, 152], [232, 232, 232], [222, 188, 40], [205, 205, 205],
    [0, 0, 0],
], dtype=np.float64)
_SKY = np.array([150, 185, 232], dtype=np.float64)
_RED, _GREEN = np.array([210, 40, 40.0]), np.array([40, 190, 70.0])
_OBJECT_COLOURS = {
    "vehicle": (40, 70, 200), "bicycle": (230, 130, 20), "pedestrian": (220, 40, 170), "traffic_cone": (255, 120, 0),
    "barrier": (240, 230, 40), "czone_sign": (190, 190, 0), "generic_object": (130, 70, 35),
}
_INTENSITY = {GRASS: 0.1, ROAD: 0.05, CARPARK: 0.08, SIDEWALK: 0.15, WHITE: 0.8, YELLOW: 0.7, CROSSWALK: 0.6, STOP: 0.6}


class MapRaster:
    """Top-down class raster of the map plus, per cell, the index of the stop line it belongs to (-1: none)."""

    def __init__(self, net: RoadNetwork, resolution: float = 0.2):
        self.res = resolution
        minx, miny, maxx, maxy = shapely.unary_union([net.drivable] + [shapely.LineString(s) for s in net.sidewalks]).bounds
        self.x0, self.y0 = minx - 5.0, miny - 5.0
        self.w = int(np.ceil((maxx - minx + 10.0) / resolution))
        self.h = int(np.ceil((maxy - miny + 10.0) / resolution))
        self.cls = np.full((self.h, self.w), GRASS, dtype=np.uint8)
        self.stop = np.full((self.h, self.w), -1, dtype=np.int32)
        layers = net.layers
        for row in layers["walkways"]:
            self._fill(row["geometry"], SIDEWALK)
        for row in layers["lane_groups_polygons"]:
            self._fill(row["geometry"], ROAD)
        for row in layers["intersections"]:
            self._fill(row["geometry"], ROAD)
        for row in layers["carpark_areas"]:
            self._fill(row["geometry"], CARPARK)
        for row in layers["crosswalks"]:
            self._fill(row["geometry"], CROSSWALK, stripes=True)
        self.stop_lanes: list[str] = []  # stop index -> lane id the stop line ends
        lane_by_end = {}
        for lid, lane in net.lanes.items():
            if not lane.is_connector:
                lane_by_end[tuple(np.round(lane.pts[-1], 3))] = lid
        for row in layers["stop_polygons"]:
            poly = row["geometry"]
            coords = np.asarray(poly.exterior.coords)
            end = tuple(np.round((coords[0] + coords[1]) / 2, 3))
            self.stop_lanes.append(lane_by_end.get(end, ""))
            self._fill(poly, STOP, stop_index=len(self.stop_lanes) - 1)
        for line, solid in net.markings:
            self._line(line, YELLOW if solid else WHITE, dashed=not solid)

    def _cells(self, geom):
        minx, miny, maxx, maxy = geom.bounds
        i0, i1 = int((minx - self.x0) / self.res), int(np.ceil((maxx - self.x0) / self.res)) + 1
        j0, j1 = int((miny - self.y0) / self.res), int(np.ceil((maxy - self.y0) / self.res)) + 1
        i0, j0 = max(i0, 0), max(j0, 0)
        i1, j1 = min(i1, self.w), min(j1, self.h)
        ii, jj = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1))
        xs = self.x0 + (ii + 0.5) * self.res
        ys = self.y0 + (jj + 0.5) * self.res
        return ii, jj, xs, ys

    def _fill(self, geom, value: int, stripes: bool = False, stop_index: int = -1) -> None:
        ii, jj, xs, ys = self._cells(geom)
        inside = shapely.contains_xy(geom, xs, ys)
        if stripes:
            inside &= ((np.floor(xs / 0.6) + np.floor(ys / 0.6)) % 2) == 0
        self.cls[jj[inside], ii[inside]] = value
        if stop_index >= 0:
            self.stop[jj[inside], ii[inside]] = stop_index

    def _line(self, line: np.ndarray, value: int, dashed: bool) -> None:
        s = arc_length(line)
        t = np.arange(0.0, s[-1], self.res / 2)
        if dashed:
            t = t[(t % 9.0) < 3.0]
        x, y = np.interp(t, s, line[:, 0]), np.interp(t, s, line[:, 1])
        for off in (-0.06, 0.06):
            i = ((x + off - self.x0) / self.res).astype(int)
            j = ((y + off - self.y0) / self.res).astype(int)
            ok = (i >= 0) & (i < self.w) & (j >= 0) & (j < self.h)
            self.cls[j[ok], i[ok]] = value

    def lookup(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.floor((x - self.x0) / self.res).astype(np.int64)
        j = np.floor((y - self.y0) / self.res).astype(np.int64)
        ok = (i >= 0) & (i < self.w) & (j >= 0) & (j < self.h)
        cls = np.full(x.shape, GRASS, dtype=np.uint8)
        stop = np.full(x.shape, -1, dtype=np.int32)
        cls[ok] = self.cls[j[ok], i[ok]]
        stop[ok] = self.stop[j[ok], i[ok]]
        return cls, stop


@njit(cache=True)
def _ray_boxes(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray, max_t: float):
    """Nearest box hit per ray: (distance or inf, box index or -1, face 0/1/2 = x/y/z slab)."""
    n = dirs.shape[0]
    best_t = np.full(n, np.inf)
    best_i = np.full(n, -1, dtype=np.int64)
    best_f = np.zeros(n, dtype=np.int64)
    for b in range(boxes.shape[0]):
        cx, cy, h, hl, hw, hz = boxes[b, 0], boxes[b, 1], boxes[b, 2], boxes[b, 3] / 2, boxes[b, 4] / 2, boxes[b, 5]
        c, s = np.cos(h), np.sin(h)
        ox = (origin[0] - cx) * c + (origin[1] - cy) * s
        oy = -(origin[0] - cx) * s + (origin[1] - cy) * c
        oz = origin[2]
        for r in range(n):
            dx = dirs[r, 0] * c + dirs[r, 1] * s
            dy = -dirs[r, 0] * s + dirs[r, 1] * c
            dz = dirs[r, 2]
            t0, t1, face = 0.0, max_t, -1
            ok = True
            for axis in range(3):
                if axis == 0:
                    o, d, lo, hi = ox, dx, -hl, hl
                elif axis == 1:
                    o, d, lo, hi = oy, dy, -hw, hw
                else:
                    o, d, lo, hi = oz, dz, 0.0, hz
                if abs(d) < 1e-12:
                    if o < lo or o > hi:
                        ok = False
                        break
                    continue
                ta, tb = (lo - o) / d, (hi - o) / d
                if ta > tb:
                    ta, tb = tb, ta
                if ta > t0:
                    t0, face = ta, axis
                if tb < t1:
                    t1 = tb
                if t0 > t1:
                    ok = False
                    break
            if ok and t0 < best_t[r]:
                best_t[r], best_i[r], best_f[r] = t0, b, max(face, 0)
    return best_t, best_i, best_f


def _to_global(ego_pose: np.ndarray, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(ego_pose[2]), np.sin(ego_pose[2])
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    o = rot @ origin + np.array([ego_pose[0], ego_pose[1], 0.0])
    return o, dirs @ rot.T


def _nearby(ego_pose: np.ndarray, boxes: np.ndarray, kinds: list[str], max_range: float):
    if len(boxes) == 0:
        return boxes, []
    d = np.hypot(boxes[:, 0] - ego_pose[0], boxes[:, 1] - ego_pose[1])
    keep = d < max_range
    return np.ascontiguousarray(boxes[keep]), [k for k, m in zip(kinds, keep) if m]


def render_camera(raster: MapRaster, cam: CameraModel, ego_pose: np.ndarray, boxes: np.ndarray, kinds: list[str],
                  red_lanes: set[str], max_range: float = 80.0) -> np.ndarray:
    """(H, W, 3) uint8 image seen by ``cam`` with the ego's rear axle at ``ego_pose`` (global x, y, heading)."""
    origin_ego, dirs_ego = cam.rays_ego()
    origin, dirs = _to_global(ego_pose, origin_ego, dirs_ego.reshape(-1, 3))
    colour = np.tile(_SKY, (len(dirs), 1))
    # Sky gets lighter towards the horizon.
    colour += (1.0 - np.clip(dirs[:, 2] * 3.0, 0.0, 1.0))[:, None] * 20.0
    down = dirs[:, 2] < -1e-6
    t_ground = np.full(len(dirs), np.inf)
    t_ground[down] = -origin[2] / dirs[down, 2]
    t_ground[t_ground > 150.0] = np.inf
    hit = np.isfinite(t_ground)
    px = origin[0] + t_ground[hit] * dirs[hit, 0]
    py = origin[1] + t_ground[hit] * dirs[hit, 1]
    cls, stop = raster.lookup(px, py)
    ground = _PALETTE[cls].copy()
    is_stop = cls == STOP
    if np.any(is_stop):
        lanes = [raster.stop_lanes[i] for i in stop[is_stop]]
        ground[is_stop] = np.array([_RED if lane in red_lanes else _GREEN for lane in lanes])
    fog = np.clip(t_ground[hit] / 150.0, 0.0, 1.0)[:, None] * 0.5
    colour[hit] = ground * (1 - fog) + _SKY * fog
    near_boxes, near_kinds = _nearby(ego_pose, boxes, kinds, max_range)
    if len(near_boxes):
        t_box, idx, face = _ray_boxes(origin, dirs, near_boxes, 200.0)
        in_front = (idx >= 0) & (t_box < t_ground)
        if np.any(in_front):
            base = np.array([_OBJECT_COLOURS.get(near_kinds[i], (128, 128, 128)) for i in idx[in_front]], dtype=np.float64)
            shade = np.array([1.0, 0.75, 1.15])[face[in_front]]
            colour[in_front] = np.clip(base * shade[:, None], 0, 255)
    return np.clip(colour, 0, 255).astype(np.uint8).reshape(cam.height, cam.width, 3)


def render_lidar(raster: MapRaster, ego_pose: np.ndarray, boxes: np.ndarray, beams: int, azimuths: int,
                 max_range: float = 80.0) -> np.ndarray:
    """(N, 6) points (x, y, z, intensity, ring, lidar_info) in the lidar frame."""
    elev = np.deg2rad(np.linspace(-25.0, 3.0, beams))
    az = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
    ee, aa = np.meshgrid(elev, az, indexing="ij")
    dirs_l = np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], axis=-1).reshape(-1, 3)
    ring = np.repeat(np.arange(beams), azimuths).astype(np.float64)
    origin, dirs = _to_global(ego_pose, LIDAR_TO_EGO_TRANSLATION, dirs_l)
    t = np.full(len(dirs), np.inf)
    down = dirs[:, 2] < -1e-6
    t[down] = -origin[2] / dirs[down, 2]
    intensity = np.zeros(len(dirs))
    hit_ground = np.isfinite(t)
    cls, _ = raster.lookup(origin[0] + t[hit_ground] * dirs[hit_ground, 0], origin[1] + t[hit_ground] * dirs[hit_ground, 1])
    intensity[hit_ground] = np.array([_INTENSITY[int(c)] for c in cls]) if len(cls) else 0.0
    near_boxes, _ = _nearby(ego_pose, boxes, [""] * len(boxes), max_range)
    if len(near_boxes):
        t_box, idx, _ = _ray_boxes(origin, dirs, near_boxes, max_range)
        closer = (idx >= 0) & (t_box < t)
        t[closer] = t_box[closer]
        intensity[closer] = 0.4
    keep = np.isfinite(t) & (t < max_range) & (t > 0.5)
    pts = dirs_l[keep] * t[keep][:, None]
    return np.column_stack([pts, intensity[keep], ring[keep], np.zeros(int(keep.sum()))])
