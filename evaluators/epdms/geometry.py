"""Numba geometry kernels with the predicates NAVSIM gets from shapely/GEOS.

Semantics reproduced (and why they matter):
* point-in-polygon is shapely's ``contains``/``within``: a point on the boundary is *outside* (ego-area flags,
  intersection look-ups);
* polygon/segment ``intersects`` counts touching as intersecting (collisions, TTC, red lights);
* projection onto a polyline is GEOS ``LengthIndexedLine.project``: the first segment with the strictly smallest
  distance wins, zero-length segments project to their start (ego progress).

Polygons are stored once per scene in a ``PolygonSet``: all rings' edges in one array, plus for each polygon a
1-D bucketing of its edges along its longer bounding-box axis, so a point test touches only the few edges whose
span covers the point instead of the hundreds of edges of a long road polygon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numba import njit

# ----------------------------------------------------------------------------------------------------------------
# 1-D bucketing (used for polygon edges and for the centerline's segments)


def build_buckets(lo_values: np.ndarray, hi_values: np.ndarray, lo: float, hi: float, num_buckets: int):
    """CSR lists of the items whose [lo_values, hi_values] span overlaps each of ``num_buckets`` equal buckets."""
    inv = _bucket_inv(lo, hi, num_buckets)
    first, last = _bucket_spans(np.asarray(lo_values, dtype=np.float64), np.asarray(hi_values, dtype=np.float64),
                                lo, inv, num_buckets)
    ptr, items = _bucket_lists(first, last, num_buckets)
    return inv, ptr, items


@njit(cache=True, error_model="numpy", inline="always")
def _bucket_inv(lo, hi, num_buckets):
    """1 / the bucket width of [lo, hi] cut into ``num_buckets`` (width 1 when the span is empty)."""
    return 1.0 / ((hi - lo) / num_buckets if hi > lo else 1.0)


@njit(cache=True, error_model="numpy", inline="always")
def _clamped_bucket(value, lo, inv, num_buckets):
    """The bucket of a span end: floor, then clipped to the buckets."""
    return min(max(int(np.floor((value - lo) * inv)), 0), num_buckets - 1)


@njit(cache=True, error_model="numpy")
def _bucket_spans(lo_values, hi_values, lo, inv, num_buckets):
    first = np.empty(lo_values.shape[0], dtype=np.int64)
    last = np.empty(lo_values.shape[0], dtype=np.int64)
    for i in range(lo_values.shape[0]):
        first[i] = _clamped_bucket(lo_values[i], lo, inv, num_buckets)
        last[i] = _clamped_bucket(hi_values[i], lo, inv, num_buckets)
    return first, last


@njit(cache=True, error_model="numpy")
def _bucket_lists(first, last, num_buckets):
    counts = np.zeros(num_buckets, dtype=np.int64)
    for i in range(first.shape[0]):
        for bucket in range(first[i], last[i] + 1):
            counts[bucket] += 1
    ptr = np.zeros(num_buckets + 1, dtype=np.int64)
    for bucket in range(num_buckets):
        ptr[bucket + 1] = ptr[bucket] + counts[bucket]
    items = np.empty(ptr[num_buckets], dtype=np.int64)
    fill = ptr[:-1].copy()
    for i in range(first.shape[0]):
        for bucket in range(first[i], last[i] + 1):
            items[fill[bucket]] = i
            fill[bucket] += 1
    return ptr, items


@njit(cache=True, error_model="numpy", inline="always")
def _bucket_of(value, lo, inv, num_buckets):
    b = int((value - lo) * inv)
    if b < 0:
        return 0
    if b >= num_buckets:
        return num_buckets - 1
    return b


# ----------------------------------------------------------------------------------------------------------------
# Polygon sets


@dataclass(frozen=True)
class PolygonSet:
    """Polygons (with holes) prepared for fast point tests.

    ``edges[e] = (u1, v1, u2, v2)`` in the polygon's bucketing frame: (x, y) when buckets run along y, (y, x)
    when they run along x (``swap[p]``). Bucket ``b`` of polygon ``p`` is ``bucket_base[p] + b``.
    """

    bbox: np.ndarray  # (P, 4) min_x, min_y, max_x, max_y
    swap: np.ndarray  # (P,) bool
    bucket_lo: np.ndarray  # (P,)
    bucket_inv: np.ndarray  # (P,)
    bucket_count: np.ndarray  # (P,) int64
    bucket_base: np.ndarray  # (P,) int64
    bucket_ptr: np.ndarray  # (total_buckets + 1,) int64
    bucket_items: np.ndarray  # (M,) int64 edge indices
    edges: np.ndarray  # (E, 4)
    edge_ptr: np.ndarray  # (P + 1,) int64: polygon p owns edges[edge_ptr[p]:edge_ptr[p+1]]

    def __len__(self) -> int:
        return len(self.bbox)

    @property
    def arrays(self) -> tuple:
        return (
            self.bbox,
            self.swap,
            self.bucket_lo,
            self.bucket_inv,
            self.bucket_count,
            self.bucket_base,
            self.bucket_ptr,
            self.bucket_items,
            self.edges,
        )

    @classmethod
    def build(cls, polygons: Sequence[tuple[np.ndarray, Sequence[np.ndarray]]]) -> "PolygonSet":
        """``polygons`` = [(exterior (K, 2), [hole (K, 2), ...]), ...], rings open or closed."""
        rings = [np.asarray(ring, dtype=np.float64)[:, :2] for exterior, holes in polygons
                 for ring in (exterior, *holes)]
        if any(len(ring) < 3 for ring in rings):  # the kernel reads each ring's first and last point unchecked
            raise ValueError("PolygonSet: every ring needs at least 3 points")
        ring_ptr = np.zeros(len(rings) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rings], out=ring_ptr[1:])
        polygon_ring_ptr = np.zeros(len(polygons) + 1, dtype=np.int64)
        np.cumsum([1 + len(holes) for _, holes in polygons], out=polygon_ring_ptr[1:])
        points = np.concatenate(rings) if rings else np.zeros((0, 2))
        return cls(*_build_polygon_set(points, ring_ptr, polygon_ring_ptr))


@njit(cache=True, error_model="numpy")
def _build_polygon_set(points, ring_ptr, polygon_ring_ptr):
    """PolygonSet's arrays from rings stored back to back (``points[ring_ptr[k]:ring_ptr[k+1]]`` is ring k,
    polygon p owns rings ``polygon_ring_ptr[p]:polygon_ring_ptr[p+1]``, its exterior first). One pass in numba:
    a Python loop over a scene's polygons was half of a submission's per-scene cost."""
    n = polygon_ring_ptr.shape[0] - 1
    bbox = np.zeros((n, 4))
    swap = np.zeros(n, dtype=np.bool_)
    bucket_lo = np.zeros(n)
    bucket_inv = np.ones(n)
    bucket_count = np.ones(n, dtype=np.int64)
    bucket_base = np.zeros(n, dtype=np.int64)
    edge_ptr = np.zeros(n + 1, dtype=np.int64)
    # A ring of K points has K edges when open (closed here) and K - 1 when its last point repeats the first.
    num_rings = ring_ptr.shape[0] - 1
    closed = np.empty(num_rings, dtype=np.bool_)
    num_edges = 0
    for k in range(num_rings):
        a, b = ring_ptr[k], ring_ptr[k + 1] - 1
        closed[k] = points[a, 0] == points[b, 0] and points[a, 1] == points[b, 1]
        num_edges += (b - a) if closed[k] else (b - a + 1)
    edges = np.empty((num_edges, 4))
    for p in range(n):
        e = edge_ptr[p]
        for k in range(polygon_ring_ptr[p], polygon_ring_ptr[p + 1]):
            a, b = ring_ptr[k], ring_ptr[k + 1] - 1
            for i in range(a, b):
                edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3] = (points[i, 0], points[i, 1], points[i + 1, 0],
                                                                      points[i + 1, 1])
                e += 1
            if not closed[k]:
                edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3] = points[b, 0], points[b, 1], points[a, 0], points[a, 1]
                e += 1
        edge_ptr[p + 1] = e
        outer = points[ring_ptr[polygon_ring_ptr[p]]:ring_ptr[polygon_ring_ptr[p] + 1]]
        bbox[p, 0], bbox[p, 1] = outer[:, 0].min(), outer[:, 1].min()
        bbox[p, 2], bbox[p, 3] = outer[:, 0].max(), outer[:, 1].max()
        # Bucket along the longer axis: rays then cross the polygon's short side and meet few edges.
        swap[p] = (bbox[p, 2] - bbox[p, 0]) > (bbox[p, 3] - bbox[p, 1])
        if swap[p]:
            for i in range(edge_ptr[p], e):
                edges[i, 0], edges[i, 1], edges[i, 2], edges[i, 3] = edges[i, 1], edges[i, 0], edges[i, 3], edges[i, 2]
        bucket_count[p] = max(1, min(1024, (e - edge_ptr[p]) // 2))
        if p + 1 < n:
            bucket_base[p + 1] = bucket_base[p] + bucket_count[p]
    total_buckets = bucket_base[n - 1] + bucket_count[n - 1] if n > 0 else 0
    first = np.empty(num_edges, dtype=np.int64)
    last = np.empty(num_edges, dtype=np.int64)
    for p in range(n):
        lo, hi = np.inf, -np.inf
        for i in range(edge_ptr[p], edge_ptr[p + 1]):
            lo = min(lo, edges[i, 1], edges[i, 3])
            hi = max(hi, edges[i, 1], edges[i, 3])
        count = bucket_count[p]
        inv = _bucket_inv(lo, hi, count)
        bucket_lo[p], bucket_inv[p] = lo, inv
        for i in range(edge_ptr[p], edge_ptr[p + 1]):
            first[i] = bucket_base[p] + _clamped_bucket(min(edges[i, 1], edges[i, 3]), lo, inv, count)
            last[i] = bucket_base[p] + _clamped_bucket(max(edges[i, 1], edges[i, 3]), lo, inv, count)
    bucket_ptr, bucket_items = _bucket_lists(first, last, total_buckets)
    return bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr, bucket_items, edges, edge_ptr


# ----------------------------------------------------------------------------------------------------------------
# Robust orientation: GEOS's CGAlgorithmsDD::orientationIndex (a floating-point filter, then double-double).
# Points exactly on a lane boundary (an ego driving on the line between two lanes) are decided by this sign,
# so a plain floating-point cross product would flip ego-area flags that NAVSIM does not flip.

_SPLIT = 134217729.0  # 2^27 + 1, Dekker's splitter
_DP_SAFE_EPSILON = 1e-15


@njit(cache=True, error_model="numpy", inline="always")
def _dd_add(ahi, alo, bhi, blo):
    s = ahi + bhi
    t = alo + blo
    e = s - ahi
    f = t - alo
    s2 = s - e
    t2 = t - f
    s2 = (bhi - e) + (ahi - s2)
    t2 = (blo - f) + (alo - t2)
    e = s2 + t
    h_big = s + e
    h = e + (s - h_big)
    e = t2 + h
    zhi = h_big + e
    zlo = e + (h_big - zhi)
    return zhi, zlo


@njit(cache=True, error_model="numpy", inline="always")
def _dd_mul(ahi, alo, bhi, blo):
    c_big = _SPLIT * ahi
    hx = c_big - ahi
    c = _SPLIT * bhi
    hx = c_big - hx
    tx = ahi - hx
    hy = c - bhi
    c_big = ahi * bhi
    hy = c - hy
    ty = bhi - hy
    c = ((((hx * hy - c_big) + hx * ty) + tx * hy) + tx * ty) + (ahi * blo + alo * bhi)
    zhi = c_big + c
    hx = c_big - zhi
    zlo = c + hx
    return zhi, zlo


@njit(cache=True, error_model="numpy")
def orientation_index(p1x, p1y, p2x, p2y, qx, qy):
    """+1 if q is left of p1->p2 (counter-clockwise), -1 if right, 0 if collinear; GEOS arithmetic."""
    detleft = (p1x - qx) * (p2y - qy)
    detright = (p1y - qy) * (p2x - qx)
    det = detleft - detright
    decided = False
    if detleft > 0.0:
        if detright <= 0.0:
            decided = True
        else:
            detsum = detleft + detright
    elif detleft < 0.0:
        if detright >= 0.0:
            decided = True
        else:
            detsum = -detleft - detright
    else:
        decided = True
    if not decided:
        errbound = _DP_SAFE_EPSILON * detsum
        if det >= errbound or -det >= errbound:
            decided = True
    if decided:
        if det > 0.0:
            return 1
        if det < 0.0:
            return -1
        return 0
    dx1 = _dd_add(p2x, 0.0, -p1x, 0.0)
    dy1 = _dd_add(p2y, 0.0, -p1y, 0.0)
    dx2 = _dd_add(qx, 0.0, -p2x, 0.0)
    dy2 = _dd_add(qy, 0.0, -p2y, 0.0)
    a = _dd_mul(dx1[0], dx1[1], dy2[0], dy2[1])
    b = _dd_mul(dy1[0], dy1[1], dx2[0], dx2[1])
    d = _dd_add(a[0], a[1], -b[0], -b[1])
    if d[0] > 0.0:
        return 1
    if d[0] < 0.0:
        return -1
    if d[1] > 0.0:
        return 1
    if d[1] < 0.0:
        return -1
    return 0


# Point locations
_EXTERIOR, _BOUNDARY, _INTERIOR = 0, 1, 2


@njit(cache=True, error_model="numpy", inline="always")
def locate_point(px, py, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                 bucket_items, edges):
    """GEOS ``RayCrossingCounter`` over the polygon's bucketed edges: exterior, boundary or interior."""
    # Bitwise ``|``, not ``or``: numba's short-circuit chain here made the whole test 2.5x slower.
    if (px < bbox[p, 0]) | (px > bbox[p, 2]) | (py < bbox[p, 1]) | (py > bbox[p, 3]):
        return _EXTERIOR
    # In the bucketing frame the ray runs along +u through the point's v; swapping axes mirrors the plane,
    # which the crossing parity does not notice.
    if swap[p]:
        pu, pv = py, px
    else:
        pu, pv = px, py
    bucket = bucket_base[p] + _bucket_of(pv, bucket_lo[p], bucket_inv[p], bucket_count[p])
    crossings = 0
    for k in range(bucket_ptr[bucket], bucket_ptr[bucket + 1]):
        e = bucket_items[k]
        u1, v1, u2, v2 = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
        if u1 < pu and u2 < pu:
            continue
        if pu == u2 and pv == v2:
            return _BOUNDARY
        if v1 == pv and v2 == pv:
            if min(u1, u2) <= pu <= max(u1, u2):
                return _BOUNDARY
            continue
        if (v1 > pv and v2 <= pv) or (v2 > pv and v1 <= pv):
            orient = orientation_index(u1, v1, u2, v2, pu, pv)
            if orient == 0:
                return _BOUNDARY
            if v2 < v1:
                orient = -orient
            if orient == 1:
                crossings += 1
    return _INTERIOR if crossings % 2 == 1 else _EXTERIOR


@njit(cache=True, error_model="numpy", inline="always")
def point_in_polygon(px, py, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                     bucket_items, edges):
    """shapely ``contains``: strictly inside polygon ``p`` (holes excluded, boundary outside)."""
    return locate_point(px, py, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                        bucket_items, edges) == _INTERIOR


@njit(cache=True, error_model="numpy", inline="always")
def point_in_polygon_or_boundary(px, py, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base,
                                 bucket_ptr, bucket_items, edges):
    """shapely ``intersects`` of a point and polygon ``p``: inside or on the boundary."""
    return locate_point(px, py, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                        bucket_items, edges) != _EXTERIOR


# ----------------------------------------------------------------------------------------------------------------
# Segments and convex quads (ego and object boxes)


@njit(cache=True, error_model="numpy", inline="always")
def _orient(ax, ay, bx, by, cx, cy):
    return orientation_index(ax, ay, bx, by, cx, cy)


@njit(cache=True, error_model="numpy", inline="always")
def _on_segment(ax, ay, bx, by, px, py):
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@njit(cache=True, error_model="numpy", inline="always")
def segments_intersect(ax, ay, bx, by, cx, cy, dx, dy):
    """Closed segments AB and CD share a point (touching counts)."""
    o1 = _orient(ax, ay, bx, by, cx, cy)
    o2 = _orient(ax, ay, bx, by, dx, dy)
    o3 = _orient(cx, cy, dx, dy, ax, ay)
    o4 = _orient(cx, cy, dx, dy, bx, by)
    if o1 != o2 and o3 != o4:
        return True
    if o1 == 0 and _on_segment(ax, ay, bx, by, cx, cy):
        return True
    if o2 == 0 and _on_segment(ax, ay, bx, by, dx, dy):
        return True
    if o3 == 0 and _on_segment(cx, cy, dx, dy, ax, ay):
        return True
    if o4 == 0 and _on_segment(cx, cy, dx, dy, bx, by):
        return True
    return False


@njit(cache=True, error_model="numpy", inline="always")
def point_in_convex_quad(px, py, quad):
    """Inside or on the boundary of a convex quad (either winding)."""
    sign = 0
    for i in range(4):
        j = (i + 1) % 4
        o = _orient(quad[i, 0], quad[i, 1], quad[j, 0], quad[j, 1], px, py)
        if o != 0:
            if sign == 0:
                sign = o
            elif o != sign:
                return False
    return True


@njit(cache=True, error_model="numpy", inline="always")
def _projection_range(poly, n, nx, ny):
    """(min, max) of the first ``n`` vertices of ``poly`` projected on the axis (nx, ny)."""
    lo = np.inf
    hi = -np.inf
    for k in range(n):
        v = nx * poly[k, 0] + ny * poly[k, 1]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@njit(cache=True, error_model="numpy")
def convex_intersect(p, np_, q, nq):
    """Two convex polygons share a point (separating axes; touching counts, as shapely ``intersects``)."""
    for shape in range(2):
        a = p if shape == 0 else q
        na = np_ if shape == 0 else nq
        for i in range(na):
            j = i + 1 if i + 1 < na else 0
            nx = a[i, 1] - a[j, 1]
            ny = a[j, 0] - a[i, 0]
            min_p, max_p = _projection_range(p, np_, nx, ny)
            min_q, max_q = _projection_range(q, nq, nx, ny)
            if max_p < min_q or max_q < min_p:
                return False
    return True


@njit(cache=True, error_model="numpy")
def convex_quads_intersect(a, b):
    """Separating-axis test for two convex quads; touching counts as intersecting (shapely ``intersects``)."""
    return convex_intersect(a, 4, b, 4)


@njit(cache=True, error_model="numpy")
def segment_intersects_quad(ax, ay, bx, by, quad):
    if point_in_convex_quad(ax, ay, quad) or point_in_convex_quad(bx, by, quad):
        return True
    for i in range(4):
        j = (i + 1) % 4
        if segments_intersect(ax, ay, bx, by, quad[i, 0], quad[i, 1], quad[j, 0], quad[j, 1]):
            return True
    return False


@njit(cache=True, error_model="numpy")
def quad_intersects_polygon(quad, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                            bucket_items, edges, edge_ptr):
    """A convex quad and a general polygon ``p`` share a point."""
    qminx = min(min(quad[0, 0], quad[1, 0]), min(quad[2, 0], quad[3, 0]))
    qmaxx = max(max(quad[0, 0], quad[1, 0]), max(quad[2, 0], quad[3, 0]))
    qminy = min(min(quad[0, 1], quad[1, 1]), min(quad[2, 1], quad[3, 1]))
    qmaxy = max(max(quad[0, 1], quad[1, 1]), max(quad[2, 1], quad[3, 1]))
    if qmaxx < bbox[p, 0] or qminx > bbox[p, 2] or qmaxy < bbox[p, 1] or qminy > bbox[p, 3]:
        return False
    for i in range(4):
        if point_in_polygon_or_boundary(quad[i, 0], quad[i, 1], p, bbox, swap, bucket_lo, bucket_inv,
                                        bucket_count, bucket_base, bucket_ptr, bucket_items, edges):
            return True
    for e in range(edge_ptr[p], edge_ptr[p + 1]):
        if swap[p]:
            x1, y1, x2, y2 = edges[e, 1], edges[e, 0], edges[e, 3], edges[e, 2]
        else:
            x1, y1, x2, y2 = edges[e, 0], edges[e, 1], edges[e, 2], edges[e, 3]
        if point_in_convex_quad(x1, y1, quad):
            return True
        for i in range(4):
            j = (i + 1) % 4
            if segments_intersect(x1, y1, x2, y2, quad[i, 0], quad[i, 1], quad[j, 0], quad[j, 1]):
                return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# Polylines (the PDM centerline)


@njit(cache=True, error_model="numpy", inline="always")
def point_segment_distance(px, py, ax, ay, bx, by):
    """GEOS ``Distance::pointToSegment``."""
    if ax == bx and ay == by:
        return np.sqrt((px - ax) * (px - ax) + (py - ay) * (py - ay))
    len2 = (bx - ax) * (bx - ax) + (by - ay) * (by - ay)
    r = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / len2
    if r <= 0.0:
        return np.sqrt((px - ax) * (px - ax) + (py - ay) * (py - ay))
    if r >= 1.0:
        return np.sqrt((px - bx) * (px - bx) + (py - by) * (py - by))
    s = ((ay - py) * (bx - ax) - (ax - px) * (by - ay)) / len2
    return abs(s) * np.sqrt(len2)


@njit(cache=True, error_model="numpy")
def project_onto_polyline(px, py, line):
    """GEOS ``LengthIndexedLine.project``: arc length of the nearest point; first strictly nearest segment wins."""
    best_distance = np.inf
    best_measure = -1.0
    start_measure = 0.0
    for i in range(line.shape[0] - 1):
        ax, ay, bx, by = line[i, 0], line[i, 1], line[i + 1, 0], line[i + 1, 1]
        seg_len = np.sqrt((bx - ax) * (bx - ax) + (by - ay) * (by - ay))
        distance = point_segment_distance(px, py, ax, ay, bx, by)
        if px == ax and py == ay:
            factor = 0.0
        elif px == bx and py == by:
            factor = 1.0
        else:
            # 0/0 for a zero-length segment gives NaN, which GEOS maps to the segment's end (= its start).
            factor = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / ((bx - ax) * (bx - ax) + (by - ay) * (by - ay))
        if factor <= 0.0:
            measure = start_measure
        elif factor <= 1.0:
            measure = start_measure + factor * seg_len
        else:
            measure = start_measure + seg_len
        if distance < best_distance and measure > -1.0:
            best_distance = distance
            best_measure = measure
        start_measure += seg_len
    return best_measure


@dataclass(frozen=True)
class PolylineIndex:
    """A polyline's segments bucketed along its longer axis, widened by ``radius``, for "within radius?" tests."""

    line: np.ndarray  # (K, 2)
    radius: float
    swap: bool
    lo: float
    inv: float
    count: int
    ptr: np.ndarray
    items: np.ndarray

    @classmethod
    def build(cls, line: np.ndarray, radius: float) -> "PolylineIndex":
        line = np.ascontiguousarray(line[:, :2], dtype=np.float64)
        span = line.max(axis=0) - line.min(axis=0)
        swap = bool(span[0] > span[1])
        axis = 0 if swap else 1
        a, b = line[:-1, axis], line[1:, axis]
        v_lo, v_hi = np.minimum(a, b) - radius, np.maximum(a, b) + radius
        lo, hi = float(v_lo.min()), float(v_hi.max())
        count = int(max(1, min(4096, len(line))))
        inv, ptr, items = build_buckets(v_lo, v_hi, lo, hi, count)
        return cls(line, float(radius), swap, lo, float(inv), count, ptr, items)

    @property
    def arrays(self) -> tuple:
        return (self.line, self.radius, self.swap, self.lo, self.inv, self.count, self.ptr, self.items)


@njit(cache=True, error_model="numpy")
def farther_than(px, py, line, radius, swap, lo, inv, count, ptr, items):
    """Distance from the point to the polyline > ``radius`` (exactly as comparing shapely's distance)."""
    v = px if swap else py
    if count == 0:
        return True
    raw = (v - lo) * inv
    if raw < 0.0 or raw > count:
        return True
    b = _bucket_of(v, lo, inv, count)
    for k in range(ptr[b], ptr[b + 1]):
        i = items[k]
        d = point_segment_distance(px, py, line[i, 0], line[i, 1], line[i + 1, 0], line[i + 1, 1])
        if d <= radius:
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# Cell states: most points of a scene are far from every polygon boundary, so a uniform grid records per
# polygon and cell "outside", "inside" or "near the boundary"; only the last needs the exact ray test.
# Cells are classified on first use and remembered in the scene's grid: a submission touches a few hundred
# cells, a vocabulary of 8192 proposals most of the reachable ones, and neither pays for the rest of the map.

CELL_UNKNOWN, CELL_OUTSIDE, CELL_INSIDE, CELL_BOUNDARY = -1, 0, 1, 2


@dataclass(frozen=True)
class CellGrid:
    origin: np.ndarray  # (2,)
    cell: float
    shape: tuple[int, int]  # (nx, ny)
    states: np.ndarray  # (P, nx, ny) int8, CELL_UNKNOWN until first asked
    ready: np.ndarray  # (nx, ny) bool: every polygon's state of this cell is known

    @property
    def arrays(self) -> tuple:
        return (self.origin, self.cell, self.states, self.ready)

    @classmethod
    def build(cls, polygons: PolygonSet, cell: float = 1.0, max_cells: int = 4_000_000) -> "CellGrid":
        num = len(polygons)
        if num == 0:
            return cls(np.zeros(2), cell, (1, 1), np.zeros((0, 1, 1), dtype=np.int8), np.ones((1, 1), dtype=np.bool_))
        lo = polygons.bbox[:, :2].min(axis=0) - cell
        hi = polygons.bbox[:, 2:].max(axis=0) + cell
        while np.prod(np.ceil((hi - lo) / cell)) * num > max_cells:
            cell *= 2.0
        nx, ny = (int(v) for v in np.ceil((hi - lo) / cell))
        return cls(lo, float(cell), (nx, ny), np.full((num, nx, ny), CELL_UNKNOWN, dtype=np.int8),
                   np.zeros((nx, ny), dtype=np.bool_))


@njit(cache=True, error_model="numpy")
def _classify_cell(p, i, j, origin, cell, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                   bucket_items, edges):
    """Boundary if any edge's bounding box meets the (slightly widened, closed) cell, else the state of its
    centre: with no edge inside, every point of the cell is on the centre's side."""
    margin = 1e-6 * cell
    x_lo = origin[0] + i * cell - margin
    x_hi = origin[0] + (i + 1) * cell + margin
    y_lo = origin[1] + j * cell - margin
    y_hi = origin[1] + (j + 1) * cell + margin
    if x_hi < bbox[p, 0] or x_lo > bbox[p, 2] or y_hi < bbox[p, 1] or y_lo > bbox[p, 3]:
        return CELL_OUTSIDE
    if swap[p]:
        u_lo, u_hi, v_lo, v_hi = y_lo, y_hi, x_lo, x_hi
    else:
        u_lo, u_hi, v_lo, v_hi = x_lo, x_hi, y_lo, y_hi
    count = bucket_count[p]
    first = _bucket_of(v_lo, bucket_lo[p], bucket_inv[p], count)
    last = _bucket_of(v_hi, bucket_lo[p], bucket_inv[p], count)
    for b in range(bucket_base[p] + first, bucket_base[p] + last + 1):
        for k in range(bucket_ptr[b], bucket_ptr[b + 1]):
            e = bucket_items[k]
            if (min(edges[e, 1], edges[e, 3]) <= v_hi and max(edges[e, 1], edges[e, 3]) >= v_lo
                    and min(edges[e, 0], edges[e, 2]) <= u_hi and max(edges[e, 0], edges[e, 2]) >= u_lo):
                return CELL_BOUNDARY
    cx = origin[0] + (i + 0.5) * cell
    cy = origin[1] + (j + 0.5) * cell
    if locate_point(cx, cy, p, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                    bucket_items, edges) == _INTERIOR:
        return CELL_INSIDE
    return CELL_OUTSIDE


@njit(cache=True, error_model="numpy")
def classify_cells(points, origin, cell, states, ready, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base,
                   bucket_ptr, bucket_items, edges):
    """Make the cells of ``points`` (N, 2) ready. Kept out of the point-test kernels: a rarely taken call with a
    dozen array arguments inside their hot loop slows every iteration down, taken or not."""
    nx, ny = states.shape[1], states.shape[2]
    for n in range(points.shape[0]):
        i = int(np.floor((points[n, 0] - origin[0]) / cell))
        j = int(np.floor((points[n, 1] - origin[1]) / cell))
        if i < 0 or j < 0 or i >= nx or j >= ny or ready[i, j]:
            continue
        for p in range(states.shape[0]):
            if states[p, i, j] == CELL_UNKNOWN:
                states[p, i, j] = _classify_cell(p, i, j, origin, cell, bbox, swap, bucket_lo, bucket_inv,
                                                 bucket_count, bucket_base, bucket_ptr, bucket_items, edges)
        ready[i, j] = True


@njit(cache=True, error_model="numpy", inline="always")
def cell_of(px, py, origin, cell, states):
    """(i, j) of the point's cell, or (-1, -1) outside the grid (then outside every polygon)."""
    i = int(np.floor((px - origin[0]) / cell))
    j = int(np.floor((py - origin[1]) / cell))
    if i < 0 or j < 0 or i >= states.shape[1] or j >= states.shape[2]:
        return -1, -1
    return i, j
