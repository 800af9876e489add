"""Forecasts of the other road users from their t = 0 state (NumPy): what the raster draws at future times.

* ``constant_velocity``: the box moves with its t = 0 velocity, heading unchanged.
* ``lane_following``: vehicles and cyclists that sit on a lane aligned with their heading keep their lateral
  offset and their t = 0 speed *along the lane's baseline*, continuing into the outgoing lane that turns least
  (a map-aware forecast: right on curves, wrong when the agent turns off or brakes); everyone else moves with
  constant velocity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from irlvla_bench.types import MapLayer, ObjectType, ScoringCase

ALIGN_RAD = np.deg2rad(40.0)
MAX_LATERAL_M = 2.5
_FOLLOWERS = (ObjectType.VEHICLE, ObjectType.BICYCLE)


@dataclass(frozen=True)
class _Lane:
    points: np.ndarray  # (M, 2)
    s: np.ndarray  # (M,) arc length
    outgoing: tuple[str, ...]

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def direction(self, at_s: float) -> float:
        i = int(np.clip(np.searchsorted(self.s, at_s, side="right") - 1, 0, len(self.s) - 2))
        d = self.points[i + 1] - self.points[i]
        return float(np.arctan2(d[1], d[0]))


def _lanes(case: ScoringCase) -> dict[str, _Lane]:
    out = {}
    for obj in case.map_objects:
        if obj.layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR) and obj.baseline is not None and len(obj.baseline) > 1:
            pts = np.asarray(obj.baseline, dtype=np.float64)[:, :2]
            keep = np.concatenate([[True], np.hypot(*np.diff(pts, axis=0).T) > 1e-6])
            pts = pts[keep]
            if len(pts) > 1:
                s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
                out[obj.id] = _Lane(pts, s, tuple(obj.outgoing_ids))
    return out


@dataclass(frozen=True)
class _Segments:
    """Every baseline segment of the scene's lanes, for one vectorised nearest-lane query per object."""

    start: np.ndarray  # (N, 2)
    delta: np.ndarray  # (N, 2)
    s: np.ndarray  # (N,) arc length of the segment start on its lane
    lane: np.ndarray  # (N,) index into ``ids``
    ids: tuple[str, ...]

    @classmethod
    def build(cls, lanes: dict[str, _Lane]) -> "_Segments":
        ids = tuple(lanes)
        parts = [(lane.points[:-1], np.diff(lane.points, axis=0), lane.s[:-1], np.full(len(lane.s) - 1, i))
                 for i, lane in enumerate(lanes.values())]
        if not parts:
            return cls(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=int), ids)
        return cls(*(np.concatenate(p) for p in zip(*parts)), ids)

    def match(self, xy: np.ndarray, heading: float) -> tuple[str, float, float] | None:
        """(lane id, arc length, signed lateral offset) of the nearest aligned baseline within reach, or None."""
        if not len(self.s):
            return None
        length2 = np.maximum((self.delta**2).sum(1), 1e-12)
        u = np.clip(((xy - self.start) * self.delta).sum(1) / length2, 0.0, 1.0)
        offset = xy - (self.start + u[:, None] * self.delta)
        dist = np.hypot(offset[:, 0], offset[:, 1])
        direction = np.arctan2(self.delta[:, 1], self.delta[:, 0])
        aligned = np.abs(np.arctan2(np.sin(direction - heading), np.cos(direction - heading))) <= ALIGN_RAD
        dist = np.where(aligned & (dist <= MAX_LATERAL_M), dist, np.inf)
        i = int(np.argmin(dist))
        if not np.isfinite(dist[i]):
            return None
        cross = self.delta[i, 0] * offset[i, 1] - self.delta[i, 1] * offset[i, 0]
        return self.ids[self.lane[i]], float(self.s[i] + u[i] * np.sqrt(length2[i])), float(np.sign(cross) * dist[i])


def _path(lanes: dict[str, _Lane], start: str, s0: float, needed: float) -> np.ndarray:
    """Polyline from ``s0`` on lane ``start`` onwards, through the least-turning outgoing lanes."""
    lane = lanes[start]
    first = np.searchsorted(lane.s, s0, side="right")
    pieces = [np.vstack([np.interp(s0, lane.s, lane.points[:, 0]), np.interp(s0, lane.s, lane.points[:, 1])]).T,
              lane.points[first:]]
    travelled, current, seen = lane.length - s0, lane, {start}
    while travelled < needed:
        heading = current.direction(current.length)
        options = [k for k in current.outgoing if k in lanes and k not in seen]
        if not options:
            break
        turn = [abs(np.arctan2(np.sin(lanes[k].direction(0.0) - heading), np.cos(lanes[k].direction(0.0) - heading)))
                for k in options]
        nxt = options[int(np.argmin(turn))]
        seen.add(nxt)
        current = lanes[nxt]
        pieces.append(current.points[1:])
        travelled += current.length
    return np.concatenate(pieces, axis=0)


def _along(path: np.ndarray, distances: np.ndarray, lateral: float) -> np.ndarray:
    """(T, 3) x, y, heading at ``distances`` along ``path`` (straight beyond its end), shifted left by ``lateral``."""
    seg = np.diff(path, axis=0)
    keep = np.hypot(*seg.T) > 1e-9
    path = np.concatenate([path[:1], path[1:][keep]])
    if len(path) < 2:
        return None
    seg = np.diff(path, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*seg.T))])
    heading_seg = np.arctan2(seg[:, 1], seg[:, 0])
    i = np.clip(np.searchsorted(s, distances, side="right") - 1, 0, len(seg) - 1)
    t = distances - s[i]
    x = path[i, 0] + np.cos(heading_seg[i]) * t
    y = path[i, 1] + np.sin(heading_seg[i]) * t
    h = heading_seg[i]
    return np.stack([x - np.sin(h) * lateral, y + np.cos(h) * lateral, h], axis=-1)


def forecast(case: ScoringCase, boxes: np.ndarray, velocities: np.ndarray, types: np.ndarray,
             times_s: tuple[float, ...], motion: str) -> np.ndarray:
    """(T, O, 6) global boxes of the O objects (t = 0 ``boxes`` (O, 6), ``velocities`` (O, 2)) at ``times_s``."""
    times = np.asarray(times_s, dtype=np.float64)
    out = np.repeat(boxes[None], len(times), axis=0).copy()
    out[..., 0] += velocities[None, :, 0] * times[:, None]
    out[..., 1] += velocities[None, :, 1] * times[:, None]
    if motion == "constant_velocity" or not len(boxes):
        return out
    if motion != "lane_following":
        raise ValueError(f"unknown motion model {motion!r}")
    lanes = _lanes(case)
    segments = _Segments.build(lanes)
    for o in range(len(boxes)):
        if ObjectType(int(types[o])) not in _FOLLOWERS:
            continue
        found = segments.match(boxes[o, :2], float(boxes[o, 2]))
        if found is None:
            continue
        lane_id, s0, lateral = found
        speed = float(np.hypot(*velocities[o]))
        poses = _along(_path(lanes, lane_id, s0, speed * times[-1] + 1.0), speed * times, lateral)
        if poses is not None:
            out[:, o, :3] = poses
    return out
