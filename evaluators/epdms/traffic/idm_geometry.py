"""Geometry of NAVSIM's IDM agents as numba kernels over plain arrays.

nuPlan's IDM agents find their leader with shapely: an agent's path ahead is buffered (flat caps) into a
corridor, the occupancy map is asked which shapes intersect it, and the nearest of those gives the gap. The
agents' own shapes in that map are the buffered stretch of path they cover within one headway time, united
with their box. Those shapes are rebuilt here as unions of convex pieces, which makes ``intersects`` a
separating-axis test and ``distance`` a minimum over pairs of pieces:

* GEOS buffers a line (round joins, flat caps; ``OffsetSegmentGenerator``) as one offset curve per side. Per
  segment that is a quad between the two offset segments; at the inside of a turn GEOS intersects the offset
  segments, which is where two consecutive quads' inner edges cross, so the union of quads has that outline.
  The outside of a turn gets a fillet (one point per ``pi / 2 / quadrant_segments`` of turn, none below half a
  quantum), a convex fan around the vertex. When the two offset ends are closer than ``separation_factor`` x
  distance, GEOS joins them with no fillet and runs straight on to the next offset end, which shaves a sliver
  (at most 1e-3 x distance wide) off the next quad: that quad's corner is moved there.
* At the two ends of a stretch GEOS joins a partial segment; if it is shorter than distance x sin(turn) the
  neighbouring quad's inside corner pokes past the cap, and GEOS drops it whenever the inside offsets still
  intersect: ``idm_kernels`` clips that quad at the cap line (``clip_behind``, ``inside_offsets_intersect``).
* Left out, each moving the outline by far less than the float noise of the positions NAVSIM feeds it:
  GEOS's pre-simplification of the buffered line (it only drops a vertex within distance / 100 of its
  predecessor, which lane baselines never have), reversing (U-turning) input lines, and the later
  ``simplify(1e-5)`` of the occupancy shapes (moves them by at most 1e-5 m).
Checked against shapely on random lane-like paths (symmetric difference < 1e-8 m^2) and against nuPlan's own
IDM classes on random traffic (agent poses within 1e-7 m).

It also holds nuPlan's baseline arithmetic: shapely ``project`` / ``interpolate`` on a lane baseline (GEOS
``LengthIndexedLine``) and ``InterpolatedPath`` (scipy ``interp1d``) for an agent's pose at a progress.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from evaluators.epdms.geometry import orientation_index, segments_intersect

TWO_PI = 2.0 * math.pi


# ----------------------------------------------------------------------------------------------------------------
# Angles and boxes


@njit(cache=True, error_model="numpy")
def principal_value(angle):
    """nuPlan's ``principal_value``: wrap to [-pi, pi)."""
    return (angle - (-math.pi)) % TWO_PI + (-math.pi)


@njit(cache=True, error_model="numpy")
def box_corners_into(x, y, heading, half_length, half_width, out):
    """nuPlan ``OrientedBox`` corners FL, RL, RR, FR (``translate_longitudinally_and_laterally``)."""
    c, s = math.cos(heading), math.sin(heading)
    cl, sl = math.cos(heading + math.pi / 2.0), math.sin(heading + math.pi / 2.0)
    out[0, 0] = x + (half_width * cl + half_length * c)
    out[0, 1] = y + (half_width * sl + half_length * s)
    out[1, 0] = x + (half_width * cl + -half_length * c)
    out[1, 1] = y + (half_width * sl + -half_length * s)
    out[2, 0] = x + (-half_width * cl + -half_length * c)
    out[2, 1] = y + (-half_width * sl + -half_length * s)
    out[3, 0] = x + (-half_width * cl + half_length * c)
    out[3, 1] = y + (-half_width * sl + half_length * s)


# ----------------------------------------------------------------------------------------------------------------
# Convex pieces


@njit(cache=True, error_model="numpy")
def coord_distance(ax, ay, bx, by):
    """GEOS ``Coordinate::distance`` (sqrt of the sum of squares, not hypot: same rounding as GEOS)."""
    dx = ax - bx
    dy = ay - by
    return math.sqrt(dx * dx + dy * dy)


@njit(cache=True, error_model="numpy")
def point_segment_distance(px, py, ax, ay, bx, by):
    """GEOS ``Distance::pointToSegment``."""
    if ax == bx and ay == by:
        return coord_distance(px, py, ax, ay)
    len2 = (bx - ax) * (bx - ax) + (by - ay) * (by - ay)
    r = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / len2
    if r <= 0.0:
        return coord_distance(px, py, ax, ay)
    if r >= 1.0:
        return coord_distance(px, py, bx, by)
    s = ((ay - py) * (bx - ax) - (ax - px) * (by - ay)) / len2
    return abs(s) * math.sqrt(len2)


# ----------------------------------------------------------------------------------------------------------------
# Line buffers (GEOS OffsetSegmentGenerator, round joins, flat caps)


@njit(cache=True, error_model="numpy")
def offset_segment(ax, ay, bx, by, distance):
    """GEOS ``computeOffsetSegment`` on the left of a -> b: (start x, start y, end x, end y)."""
    dx = bx - ax
    dy = by - ay
    length = math.sqrt(dx * dx + dy * dy)
    ux = distance * dx / length
    uy = distance * dy / length
    return ax - uy, ay + ux, bx - uy, by + ux


@njit(cache=True, error_model="numpy")
def segment_quad_into(ax, ay, bx, by, distance, out):
    """The buffer quad of one segment: right start, right end, left end, left start. GEOS offsets the right
    side as the left side of the reversed segment; doing the same keeps the corners bit-identical."""
    lsx, lsy, lex, ley = offset_segment(ax, ay, bx, by, distance)
    rex, rey, rsx, rsy = offset_segment(bx, by, ax, ay, distance)
    out[0, 0], out[0, 1] = rsx, rsy
    out[1, 0], out[1, 1] = rex, rey
    out[2, 0], out[2, 1] = lex, ley
    out[3, 0], out[3, 1] = lsx, lsy


@njit(cache=True, error_model="numpy")
def _fillet_fan(cx, cy, p0x, p0y, p1x, p1y, radius, quantum, min_vertex_distance, out):
    """Fan [vertex, p0, clockwise fillet points, p1] of an outside turn (``addDirectedFillet``); returns the
    number of points. Points closer than ``min_vertex_distance`` to the previous one are dropped, as GEOS's
    ``OffsetSegmentString`` does."""
    out[0, 0], out[0, 1] = cx, cy
    out[1, 0], out[1, 1] = p0x, p0y
    n = 2
    start = math.atan2(p0y - cy, p0x - cx)
    end = math.atan2(p1y - cy, p1x - cx)
    if start <= end:
        start += 2.0 * math.pi
    total = abs(start - end)
    segments = int(total / quantum + 0.5)
    if segments >= 1:
        increment = total / segments
        for i in range(segments):
            angle = start + (-1 * i) * increment
            x = cx + radius * math.cos(angle)
            y = cy + radius * math.sin(angle)
            if coord_distance(x, y, out[n - 1, 0], out[n - 1, 1]) >= min_vertex_distance:
                out[n, 0], out[n, 1] = x, y
                n += 1
    if coord_distance(p1x, p1y, out[n - 1, 0], out[n - 1, 1]) >= min_vertex_distance:
        out[n, 0], out[n, 1] = p1x, p1y
        n += 1
    return n


def max_fan_points(quadrant_segments: int) -> int:
    """Upper bound on a fan's points: apex, both offset ends, one fillet point per quantum of up to 2 pi."""
    return 4 * quadrant_segments + 4


@njit(cache=True, error_model="numpy")
def path_buffer_pieces(xy, distance, quadrant_segments, separation_factor, vertex_snap_factor, quads, fans,
                       fan_count, cut, turn):
    """Buffer pieces of the polyline ``xy`` (K, 2): ``quads`` (K-1, 4, 2) per segment, ``fans`` (K, F, 2) with
    ``fan_count`` (K,) points per interior vertex (0 where that vertex needs no fan), ``cut`` (K,) -1 / +1 where
    a vertex joins without fillet on the left / right (its next quad's corner moved), else 0, and ``turn`` (K,)
    the orientation of each interior vertex (+1 left turn, -1 right turn, 0 straight).

    A sub-polyline (a stretch of the path starting or ending inside a segment) is buffered as the same pieces
    for its whole segments and interior vertices, plus fresh quads for its partial end segments
    (``partial_quad_into``): the joins depend only on the two segment directions, which a partial segment
    shares with its parent segment.
    """
    k = xy.shape[0]
    quantum = math.pi / 2.0 / quadrant_segments
    min_vertex_distance = distance * vertex_snap_factor
    for i in range(k - 1):
        segment_quad_into(xy[i, 0], xy[i, 1], xy[i + 1, 0], xy[i + 1, 1], distance, quads[i])
    fan_count[:] = 0
    cut[:] = 0
    turn[:] = 0
    for i in range(1, k - 1):
        orientation = orientation_index(xy[i - 1, 0], xy[i - 1, 1], xy[i, 0], xy[i, 1], xy[i + 1, 0], xy[i + 1, 1])
        turn[i] = orientation
        if orientation == 0:
            continue  # collinear: GEOS adds no point on either side
        if orientation == -1:
            # clockwise: outside on the left; offset ends = left end of segment i-1, left start of segment i
            p0x, p0y = quads[i - 1, 2, 0], quads[i - 1, 2, 1]
            p1x, p1y = quads[i, 3, 0], quads[i, 3, 1]
        else:
            # counter-clockwise: outside on the right, traversed backwards by GEOS
            p0x, p0y = quads[i, 0, 0], quads[i, 0, 1]
            p1x, p1y = quads[i - 1, 1, 0], quads[i - 1, 1, 1]
        if coord_distance(p0x, p0y, p1x, p1y) < distance * separation_factor:
            # no join: the outline runs from p0 straight to the far end of the next offset segment
            cut[i] = orientation
            if orientation == -1:
                quads[i, 3, 0], quads[i, 3, 1] = p0x, p0y
            else:
                quads[i - 1, 1, 0], quads[i - 1, 1, 1] = p0x, p0y
        else:
            fan_count[i] = _fillet_fan(xy[i, 0], xy[i, 1], p0x, p0y, p1x, p1y, distance, quantum,
                                       min_vertex_distance, fans[i])


@njit(cache=True, error_model="numpy")
def clip_behind(poly, n, ox, oy, dx, dy, out):
    """Sutherland-Hodgman: the part of convex ``poly`` (n points) with (p - o) . d <= 0; returns its size."""
    m = 0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        fi = (poly[i, 0] - ox) * dx + (poly[i, 1] - oy) * dy
        fj = (poly[j, 0] - ox) * dx + (poly[j, 1] - oy) * dy
        if fi <= 0.0:
            out[m, 0], out[m, 1] = poly[i, 0], poly[i, 1]
            m += 1
        if (fi < 0.0 < fj) or (fj < 0.0 < fi):
            t = fi / (fi - fj)
            out[m, 0] = poly[i, 0] + (poly[j, 0] - poly[i, 0]) * t
            out[m, 1] = poly[i, 1] + (poly[j, 1] - poly[i, 1]) * t
            m += 1
    return m


@njit(cache=True, error_model="numpy")
def inside_offsets_intersect(before, after, turn):
    """Whether GEOS finds the intersection of the two offset segments on the inside of a turn (before / after:
    the quads of the segments meeting at the vertex); when it does, the outline there is that intersection."""
    if turn == 1:  # left turn: inside on the left (quad corners 3 -> 2)
        return segments_intersect(before[3, 0], before[3, 1], before[2, 0], before[2, 1],
                                  after[3, 0], after[3, 1], after[2, 0], after[2, 1])
    return segments_intersect(before[0, 0], before[0, 1], before[1, 0], before[1, 1],
                              after[0, 0], after[0, 1], after[1, 0], after[1, 1])


@njit(cache=True, error_model="numpy")
def partial_quad_into(ax, ay, bx, by, distance, start_corner_x, start_corner_y, use_start_corner, end_corner_x,
                      end_corner_y, use_end_corner, out):
    """Quad of a partial segment a -> b; ``use_start_corner`` / ``use_end_corner`` apply the no-join corner moves
    that the path's vertex at a / b imposes (left start / right end), as in ``path_buffer_pieces``."""
    segment_quad_into(ax, ay, bx, by, distance, out)
    if use_start_corner:
        out[3, 0], out[3, 1] = start_corner_x, start_corner_y
    if use_end_corner:
        out[1, 0], out[1, 1] = end_corner_x, end_corner_y


# ----------------------------------------------------------------------------------------------------------------
# nuPlan baselines (shapely project / interpolate on a LineString) and InterpolatedPath


@njit(cache=True, error_model="numpy")
def polyline_project(line, px, py):
    """shapely ``line.project(point)`` (GEOS ``LengthIndexOfPoint``): arc length of the nearest point; the
    first segment wins ties."""
    best = np.inf
    measure = 0.0
    start = 0.0
    for i in range(line.shape[0] - 1):
        ax, ay, bx, by = line[i, 0], line[i, 1], line[i + 1, 0], line[i + 1, 1]
        d = point_segment_distance(px, py, ax, ay, bx, by)
        length = coord_distance(bx, by, ax, ay)
        if ax == bx and ay == by:
            factor = 0.0
        else:
            dx, dy = bx - ax, by - ay
            factor = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)
        if factor <= 0.0:
            at = start
        elif factor <= 1.0:
            at = start + factor * length
        else:
            at = start + length
        if d < best:
            best = d
            measure = at
        start += length
    return measure


@njit(cache=True, error_model="numpy")
def polyline_interpolate(line, s):
    """shapely ``line.interpolate(s)`` (GEOS ``LengthLocationMap``): clamped to the line's ends, a negative
    ``s`` counts from the end."""
    n = line.shape[0]
    if s < 0.0:
        total_length = 0.0
        for i in range(n - 1):
            total_length += coord_distance(line[i + 1, 0], line[i + 1, 1], line[i, 0], line[i, 1])
        s = total_length + s
    if s <= 0.0:
        return line[0, 0], line[0, 1]
    total = 0.0
    for i in range(n - 1):
        ax, ay, bx, by = line[i, 0], line[i, 1], line[i + 1, 0], line[i + 1, 1]
        length = coord_distance(bx, by, ax, ay)
        if total + length > s:
            frac = (s - total) / length
            if frac <= 0.0:
                return ax, ay
            if frac >= 1.0:
                return bx, by
            return (bx - ax) * frac + ax, (by - ay) * frac + ay
        total += length
    return line[n - 1, 0], line[n - 1, 1]


@njit(cache=True, error_model="numpy")
def nearest_pose(line, px, py, lookahead):
    """nuPlan ``NuPlanPolylineMapObject.get_nearest_pose_from_position``: (x, y, heading, arc length); the
    heading points to the baseline 0.5 m further on (or comes from 0.5 m back at the very end)."""
    s = polyline_project(line, px, py)
    x1, y1 = polyline_interpolate(line, s)
    x2, y2 = polyline_interpolate(line, s + lookahead)
    if x1 == x2 and y1 == y2:
        x0, y0 = polyline_interpolate(line, s - lookahead)
        heading = math.atan2(y1 - y0, x1 - x0)
    else:
        heading = math.atan2(y2 - y1, x2 - x1)
    return x1, y1, heading, s


@njit(cache=True, error_model="numpy")
def search_sorted(values, n, x, right):
    """``np.searchsorted(values[:n], x, side)`` for sorted ``values``: the first index i < n with values[i] >= x
    (left), or with values[i] > x (right; np.argwhere(values > x)[0]), or n."""
    lo = 0
    hi = n
    while lo < hi:
        mid = (lo + hi) // 2
        if (not values[mid] > x) if right else values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, error_model="numpy")
def path_segment_of(progress, n, s):
    """scipy ``interp1d``'s segment for ``s``: left-sided search, clipped to [1, n-1]; returns its lower index."""
    return min(max(search_sorted(progress, n, s, False), 1), n - 1) - 1


@njit(cache=True, error_model="numpy")
def path_state(xy, progress, heading, n, s):
    """``InterpolatedPath.get_state_at_progress``: linear in progress, heading unwrapped then wrapped."""
    i = path_segment_of(progress, n, s)
    span = progress[i + 1] - progress[i]
    offset = s - progress[i]
    x = (xy[i + 1, 0] - xy[i, 0]) / span * offset + xy[i, 0]
    y = (xy[i + 1, 1] - xy[i, 1]) / span * offset + xy[i, 1]
    h = (heading[i + 1] - heading[i]) / span * offset + heading[i]
    return x, y, principal_value(h)
