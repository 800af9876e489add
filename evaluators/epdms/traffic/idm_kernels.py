"""The reactive IDM rollout, one numba kernel over (ego row, step, agent).

For every row (one simulated ego trajectory) the agents start from their snapped state and take 40 steps of
0.1 s. Step t reacts to the ego state of step t-1 (NAVSIM hands the agents the ego one step late). Within a
step the agents are updated one after the other, each seeing the ones before it already moved, exactly as
nuPlan's ``IDMAgentManager.propagate_agents`` loops over its agent dict:

1. the ego's footprint (a box centred at its *rear axle*, as NAVSIM rebuilds it) replaces the previous one;
   agents farther than the radius from the ego's rear axle leave the simulation for good;
2. each agent buffers its path ahead into a corridor, finds the shapes of the occupancy map (the other agents'
   projected footprints, the ego) that intersect it, and takes the nearest of those as its leader: the gap is
   the distance between its own shape and the leader's, the leader's speed is projected on the agent's heading;
   with no leader it brakes for the end of its path as if a car stood there;
3. one forward-Euler IDM step of the agent's progress and speed; its shape becomes its box plus the buffered
   stretch of path ahead covering one headway time.

Then the vehicles NAVSIM leaves parked (never simulated, stationary off the lanes or far from any baseline)
are added for the frame unless they overlap a simulated agent or a parked vehicle added before them.

Shapes are unions of convex pieces (``idm_geometry``) kept in flat arrays indexed directly in the hot loops:
* a path's static pieces ``spts`` (A, 2K, MAXP, 2): piece 2i is segment i's quad, piece 2i+1 the fan at vertex
  i+1 (or nothing), with point counts ``scnt`` and bounds ``sbox`` (bbox, centre and radius of an enclosing
  circle), and per ``GROUP`` consecutive pieces a bbox and an oriented box ``sgroup`` (a corridor runs along
  hundreds of pieces; on a bend only oriented boxes tell the neighbouring lane apart);
* an occupancy entry's pieces ``epts`` (E, MAXE, MAXP, 2), ``ecnt``, ``ebox``, their number ``enum`` and the
  entry's bbox ``ebb``. Entries 0..A-1 are the agents, A is the ego.
A corridor is a few pieces of its own (``cpts``, ``ccnt``, ``cbox``) plus a range of its path's static pieces.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from evaluators.epdms.geometry import convex_intersect
from evaluators.epdms.traffic.idm_geometry import (
    box_corners_into,
    clip_behind,
    inside_offsets_intersect,
    partial_quad_into,
    path_state,
    point_segment_distance,
    principal_value,
    search_sorted,
    segment_quad_into,
)

GROUP = 16  # static pieces per culling group
MAX_OWN = 5  # pieces a stretch adds of its own (two partial segments, two clipped neighbours), with slack
MIN_POINTS = 6  # a quad clipped by two half-planes


# ----------------------------------------------------------------------------------------------------------------
# Convex pieces addressed as (array, i, j): points arr[i, j, :n]


@njit(cache=True, error_model="numpy")
def _sat(pa, pi, pj, pn, qa, qi, qj, qn):
    """``convex_intersect`` of two pieces addressed as (array, i, j)."""
    return convex_intersect(pa[pi, pj], pn, qa[qi, qj], qn)


@njit(cache=True, error_model="numpy")
def _gap(pa, pi, pj, pn, qa, qi, qj, qn, best):
    """Distance between two disjoint pieces: the smallest point-to-edge distance either way."""
    for k in range(pn):
        k2 = k + 1 if k + 1 < pn else 0
        for m in range(qn):
            m2 = m + 1 if m + 1 < qn else 0
            ax, ay = pa[pi, pj, k, 0], pa[pi, pj, k, 1]
            bx, by = pa[pi, pj, k2, 0], pa[pi, pj, k2, 1]
            cx, cy = qa[qi, qj, m, 0], qa[qi, qj, m, 1]
            dx, dy = qa[qi, qj, m2, 0], qa[qi, qj, m2, 1]
            d = min(min(point_segment_distance(ax, ay, cx, cy, dx, dy), point_segment_distance(bx, by, cx, cy, dx, dy)),
                    min(point_segment_distance(cx, cy, ax, ay, bx, by), point_segment_distance(dx, dy, ax, ay, bx, by)))
            best = min(best, d)
    return best


@njit(cache=True, error_model="numpy")
def _bbox_of(arr, i, j, n, out):
    """A piece's bounds: (min x, min y, max x, max y, centre x, centre y, radius of the enclosing circle)."""
    out[0] = out[1] = np.inf
    out[2] = out[3] = -np.inf
    for k in range(n):
        out[0] = min(out[0], arr[i, j, k, 0])
        out[1] = min(out[1], arr[i, j, k, 1])
        out[2] = max(out[2], arr[i, j, k, 0])
        out[3] = max(out[3], arr[i, j, k, 1])
    out[4] = (out[0] + out[2]) / 2.0
    out[5] = (out[1] + out[3]) / 2.0
    radius = 0.0
    for k in range(n):
        dx = arr[i, j, k, 0] - out[4]
        dy = arr[i, j, k, 1] - out[5]
        radius = max(radius, dx * dx + dy * dy)
    # padded so that rounding never rejects touching pieces
    out[6] = math.sqrt(radius) * (1.0 + 1e-9) + 1e-9


# Bounds are read through (array, i, j) rather than views: a numba view costs a reference count per creation,
# which dominated these loops.


@njit(cache=True, error_model="numpy")
def _near(a, ai, aj, b, bi, bj):
    """Bounds of two pieces overlap (boxes and enclosing circles): a cheap reject before the exact test."""
    if a[ai, aj, 2] < b[bi, bj, 0] or b[bi, bj, 2] < a[ai, aj, 0] or a[ai, aj, 3] < b[bi, bj, 1] or \
            b[bi, bj, 3] < a[ai, aj, 1]:
        return False
    dx = a[ai, aj, 4] - b[bi, bj, 4]
    dy = a[ai, aj, 5] - b[bi, bj, 5]
    reach = a[ai, aj, 6] + b[bi, bj, 6]
    return dx * dx + dy * dy <= reach * reach


@njit(cache=True, error_model="numpy")
def _boxes_overlap(a, ai, aj, b, bi, bj):
    return not (a[ai, aj, 2] < b[bi, bj, 0] or b[bi, bj, 2] < a[ai, aj, 0] or a[ai, aj, 3] < b[bi, bj, 1]
                or b[bi, bj, 3] < a[ai, aj, 1])


@njit(cache=True, error_model="numpy")
def _oriented_near(group, a, g, b, bi, bj):
    """A path group's oriented box (columns 4-9) comes within a piece's enclosing circle."""
    dx = b[bi, bj, 4] - group[a, g, 4]
    dy = b[bi, bj, 5] - group[a, g, 5]
    ux, uy = group[a, g, 6], group[a, g, 7]
    along = max(0.0, abs(dx * ux + dy * uy) - group[a, g, 8])
    across = max(0.0, abs(dy * ux - dx * uy) - group[a, g, 9])
    return along * along + across * across <= b[bi, bj, 6] * b[bi, bj, 6]


@njit(cache=True, error_model="numpy")
def _lower_bound(a, ai, aj, b, bi, bj):
    """A lower bound of the distance between two pieces (or a piece and an entry, 4 columns) from bounds."""
    dx = max(0.0, max(a[ai, aj, 0] - b[bi, bj, 2], b[bi, bj, 0] - a[ai, aj, 2]))
    dy = max(0.0, max(a[ai, aj, 1] - b[bi, bj, 3], b[bi, bj, 1] - a[ai, aj, 3]))
    return math.sqrt(dx * dx + dy * dy)


@njit(cache=True, error_model="numpy")
def _circle_gap(a, ai, aj, b, bi, bj):
    dx = a[ai, aj, 4] - b[bi, bj, 4]
    dy = a[ai, aj, 5] - b[bi, bj, 5]
    return math.sqrt(dx * dx + dy * dy) - a[ai, aj, 6] - b[bi, bj, 6]


@njit(cache=True, error_model="numpy")
def group_bounds(spts, scnt, num_groups):
    """Per ``GROUP`` consecutive static pieces of each path: bbox (4) and an oriented box along the stretch
    (centre, unit axis, half length, half width: 6). Lanes bend, so oriented boxes separate neighbouring lanes
    where bboxes do not. Both are padded so that rounding never rejects touching pieces."""
    num = spts.shape[0]
    out = np.zeros((num, num_groups, 10))
    for a in range(num):
        for g in range(num_groups):
            out[a, g, 0] = out[a, g, 1] = np.inf
            out[a, g, 2] = out[a, g, 3] = -np.inf
            first = last = -1
            for i in range(g * GROUP, min((g + 1) * GROUP, spts.shape[1])):
                if scnt[a, i] < 3:
                    continue
                if first < 0:
                    first = i
                last = i
                for k in range(scnt[a, i]):
                    out[a, g, 0] = min(out[a, g, 0], spts[a, i, k, 0])
                    out[a, g, 1] = min(out[a, g, 1], spts[a, i, k, 1])
                    out[a, g, 2] = max(out[a, g, 2], spts[a, i, k, 0])
                    out[a, g, 3] = max(out[a, g, 3], spts[a, i, k, 1])
            if first < 0:
                continue
            ux = spts[a, last, 0:scnt[a, last], 0].mean() - spts[a, first, 0:scnt[a, first], 0].mean()
            uy = spts[a, last, 0:scnt[a, last], 1].mean() - spts[a, first, 0:scnt[a, first], 1].mean()
            norm = math.sqrt(ux * ux + uy * uy)
            if norm > 0.0:
                ux, uy = ux / norm, uy / norm
            else:
                ux, uy = 1.0, 0.0
            lo_a = lo_c = np.inf
            hi_a = hi_c = -np.inf
            for i in range(first, last + 1):
                for k in range(scnt[a, i]):
                    along = spts[a, i, k, 0] * ux + spts[a, i, k, 1] * uy
                    across = spts[a, i, k, 1] * ux - spts[a, i, k, 0] * uy
                    lo_a, hi_a = min(lo_a, along), max(hi_a, along)
                    lo_c, hi_c = min(lo_c, across), max(hi_c, across)
            mid_a = (lo_a + hi_a) / 2.0
            mid_c = (lo_c + hi_c) / 2.0
            out[a, g, 4] = mid_a * ux - mid_c * uy
            out[a, g, 5] = mid_a * uy + mid_c * ux
            out[a, g, 6] = ux
            out[a, g, 7] = uy
            out[a, g, 8] = (hi_a - lo_a) / 2.0 * (1.0 + 1e-9) + 1e-9
            out[a, g, 9] = (hi_c - lo_c) / 2.0 * (1.0 + 1e-9) + 1e-9
    return out


# ----------------------------------------------------------------------------------------------------------------
# Occupancy entries


@njit(cache=True, error_model="numpy")
def _push(epts, ecnt, ebox, enum, e, poly, n):
    """Append a piece to entry ``e``; degenerate ones (a zero-length segment's NaN quad) are dropped, as GEOS
    drops a repeated point."""
    if n < 3:
        return
    for k in range(n):
        if not (np.isfinite(poly[k, 0]) and np.isfinite(poly[k, 1])):
            return
    j = enum[e]
    for k in range(n):
        epts[e, j, k, 0] = poly[k, 0]
        epts[e, j, k, 1] = poly[k, 1]
    ecnt[e, j] = n
    _bbox_of(epts, e, j, n, ebox[e, j])
    enum[e] = j + 1


@njit(cache=True, error_model="numpy")
def _push_static(epts, ecnt, ebox, enum, e, spts, scnt, sbox, a, lo, hi, skip0, skip1):
    """Append the static pieces [lo, hi) of path ``a`` except ``skip0`` / ``skip1`` and empty ones."""
    for i in range(lo, hi):
        n = scnt[a, i]
        if n < 3 or i == skip0 or i == skip1:
            continue
        j = enum[e]
        for k in range(n):
            epts[e, j, k, 0] = spts[a, i, k, 0]
            epts[e, j, k, 1] = spts[a, i, k, 1]
        ecnt[e, j] = n
        for k in range(7):
            ebox[e, j, k] = sbox[a, i, k]
        enum[e] = j + 1


@njit(cache=True, error_model="numpy")
def _finish(ebox, enum, ebb, e):
    """The entry's bbox ``ebb[e, 0]`` over its pieces."""
    ebb[e, 0, 0] = ebb[e, 0, 1] = np.inf
    ebb[e, 0, 2] = ebb[e, 0, 3] = -np.inf
    for j in range(enum[e]):
        ebb[e, 0, 0] = min(ebb[e, 0, 0], ebox[e, j, 0])
        ebb[e, 0, 1] = min(ebb[e, 0, 1], ebox[e, j, 1])
        ebb[e, 0, 2] = max(ebb[e, 0, 2], ebox[e, j, 2])
        ebb[e, 0, 3] = max(ebb[e, 0, 3], ebox[e, j, 3])


@njit(cache=True, error_model="numpy")
def _entries_intersect(epts, ecnt, ebox, enum, ebb, e1, e2):
    if not _boxes_overlap(ebb, e1, 0, ebb, e2, 0):
        return False
    for j in range(enum[e1]):
        if not _boxes_overlap(ebox, e1, j, ebb, e2, 0):
            continue
        for u in range(enum[e2]):
            if _near(ebox, e1, j, ebox, e2, u) and _sat(epts, e1, j, ecnt[e1, j], epts, e2, u, ecnt[e2, u]):
                return True
    return False


@njit(cache=True, error_model="numpy")
def _entries_distance(epts, ecnt, ebox, enum, ebb, e1, e2):
    """shapely ``distance`` of two entries: 0 when they intersect, else the closest pair of boundary points."""
    if _entries_intersect(epts, ecnt, ebox, enum, ebb, e1, e2):
        return 0.0
    best = np.inf
    for j in range(enum[e1]):
        if _lower_bound(ebox, e1, j, ebb, e2, 0) >= best:
            continue
        for u in range(enum[e2]):
            if _lower_bound(ebox, e1, j, ebox, e2, u) < best and _circle_gap(ebox, e1, j, ebox, e2, u) < best:
                best = _gap(epts, e1, j, ecnt[e1, j], epts, e2, u, ecnt[e2, u], best)
    return best


@njit(cache=True, error_model="numpy")
def _corridor_hits(cpts, ccnt, cbox, cnum, spts, scnt, sbox, sgroup, a, lo, hi, skip, epts, ecnt, ebox, enum, ebb,
                   e, groups):
    """The corridor (its own pieces + static pieces [lo, hi) of path ``a`` but ``skip``) intersects entry ``e``.
    Only the corridor's groups near the entry are searched, piece by piece of the entry (``groups``: scratch)."""
    num_groups = 0
    for g in range(lo // GROUP, (hi + GROUP - 1) // GROUP):
        if _boxes_overlap(sgroup, a, g, ebb, e, 0):
            groups[num_groups] = g
            num_groups += 1
    for u in range(enum[e]):
        for j in range(cnum):
            if _near(cbox, 0, j, ebox, e, u) and _sat(cpts, 0, j, ccnt[0, j], epts, e, u, ecnt[e, u]):
                return True
        for k in range(num_groups):
            g = groups[k]
            if not (_boxes_overlap(sgroup, a, g, ebox, e, u) and _oriented_near(sgroup, a, g, ebox, e, u)):
                continue
            for i in range(max(g * GROUP, lo), min((g + 1) * GROUP, hi)):
                n = scnt[a, i]
                if n >= 3 and i != skip and _near(sbox, a, i, ebox, e, u) and _sat(spts, a, i, n, epts, e, u,
                                                                                    ecnt[e, u]):
                    return True
    return False


# ----------------------------------------------------------------------------------------------------------------
# Buffered stretches of path


@njit(cache=True, error_model="numpy")
def _copy(poly, n, out):
    for k in range(n):
        out[k, 0] = poly[k, 0]
        out[k, 1] = poly[k, 1]
    return n


@njit(cache=True, error_model="numpy")
def _stretch(xy, quads, cut, turn, n, ax, ay, front, tail, bx, by, half_width, own, own_cnt, quad_a, quad_b,
             scratch):
    """Pieces of the buffer of the polyline [A, v_front .. v_tail, B] on a path (A on the segment before
    v_front, B on the one after v_tail; ``tail`` = n - 1: the stretch runs to the path's end and B is unused).

    Writes its own pieces into ``own`` / ``own_cnt`` and returns (their number, first and end of its static
    pieces, two static pieces to skip or -1). Static pieces: fans at vertices front..tail and quads
    front..tail-1, i.e. pieces [2 front - 1, 2 tail) (there is no fan at the path's last vertex).

    Whole segments and interior vertices come from the path's static pieces. At the two end vertices GEOS joins
    a partial segment: where its inside offsets intersect, the outline runs through that intersection and the
    cap, so the neighbouring full segment's inside corner, which pokes past the cap when the partial segment is
    shorter than distance x sin(turn), is clipped at the cap line (otherwise GEOS keeps it, and so do we).
    """
    to_end = tail == n - 1
    right_cut = front < n - 1 and cut[front] == 1
    partial_quad_into(ax, ay, xy[front, 0], xy[front, 1], half_width, 0.0, 0.0, False,
                      quads[front, 0, 0] if right_cut else 0.0, quads[front, 0, 1] if right_cut else 0.0, right_cut,
                      quad_a)
    if not to_end:
        left_cut = cut[tail] == -1
        partial_quad_into(xy[tail, 0], xy[tail, 1], bx, by, half_width, quads[tail - 1, 2, 0] if left_cut else 0.0,
                          quads[tail - 1, 2, 1] if left_cut else 0.0, left_cut, 0.0, 0.0, False, quad_b)
    clip_a = clip_b = False
    if front < n - 1 and turn[front] != 0:
        clip_a = inside_offsets_intersect(quad_a, quads[front] if front < tail else quad_b, turn[front])
    if not to_end and turn[tail] != 0:
        clip_b = inside_offsets_intersect(quads[tail - 1] if front < tail else quad_a, quad_b, turn[tail])
    adx, ady = xy[front, 0] - ax, xy[front, 1] - ay  # direction of the start partial
    bdx, bdy = bx - xy[tail, 0], by - xy[tail, 1]  # direction of the end partial
    lo, hi = 2 * front - 1, 2 * tail
    if front == tail and not to_end:  # one vertex joins the two partial segments
        own_cnt[0] = clip_behind(quad_a, 4, bx, by, bdx, bdy, own[0]) if clip_b else _copy(quad_a, 4, own[0])
        own_cnt[1] = clip_behind(quad_b, 4, ax, ay, -adx, -ady, own[1]) if clip_a else _copy(quad_b, 4, own[1])
        return 2, lo, hi, -1, -1
    count = 0
    skip0 = skip1 = -1
    own_cnt[count] = _copy(quad_a, 4, own[count])
    count += 1
    if not to_end:
        own_cnt[count] = _copy(quad_b, 4, own[count])
        count += 1
    both = clip_a and clip_b and tail - 1 == front  # a single full segment clipped at both ends
    if clip_a:
        m = clip_behind(quads[front], 4, ax, ay, -adx, -ady, scratch)
        if both:
            m = clip_behind(scratch, m, bx, by, bdx, bdy, own[count])
        else:
            m = _copy(scratch, m, own[count])
        own_cnt[count] = m
        count += 1
        skip0 = 2 * front
    if clip_b and not both:
        own_cnt[count] = clip_behind(quads[tail - 1], 4, bx, by, bdx, bdy, own[count])
        count += 1
        skip1 = 2 * tail - 2
    return count, lo, hi, skip0, skip1


@njit(cache=True, error_model="numpy")
def _pose(path_xy, path_s, path_h, path_n, a, progress):
    n = path_n[a]
    bounded = max(path_s[a, 0], min(progress, path_s[a, n - 1]))
    return path_state(path_xy[a], path_s[a], path_h[a], n, bounded)


@njit(cache=True, error_model="numpy")
def _corridor(xy, quads, cut, turn, n, s, bounded, ax, ay, half_width, cpts, ccnt, cbox, own, own_cnt, quad_a,
              quad_b, scratch):
    """The agent's corridor: nuPlan's ``trim_path_up_to_progress`` buffered by half its width. Fills its own
    pieces (``cpts`` / ``ccnt`` / ``cbox``) and returns (their number, static range lo, hi, static piece to skip)."""
    k1 = search_sorted(s, n, bounded, True)
    if k1 >= n:  # nothing ahead: the path's last two points
        segment_quad_into(xy[n - 2, 0], xy[n - 2, 1], xy[n - 1, 0], xy[n - 1, 1], half_width, own[0])
        own_cnt[0] = 4
        count, lo, hi, skip = 1, 0, 0, -1
    else:
        count, lo, hi, skip, _ = _stretch(xy, quads, cut, turn, n, ax, ay, k1, n - 1, 0.0, 0.0, half_width, own,
                                          own_cnt, quad_a, quad_b, scratch)
    cnum = 0
    for j in range(count):
        m = own_cnt[j]
        if m < 3 or not np.isfinite(own[j, 0, 0]):
            continue  # a zero-length partial segment: GEOS drops the repeated point
        for k in range(m):
            cpts[0, cnum, k, 0] = own[j, k, 0]
            cpts[0, cnum, k, 1] = own[j, k, 1]
        ccnt[0, cnum] = m
        _bbox_of(cpts, 0, cnum, m, cbox[0, cnum])
        cnum += 1
    return cnum, lo, hi, skip


@njit(cache=True, error_model="numpy")
def _leader(a, alive, cpts, ccnt, cbox, cnum, spts, scnt, sbox, sgroup, lo, hi, skip, epts, ecnt, ebox, enum, ebb,
            excluded, groups):
    """Occupancy entries (agents in dict order, then the ego) hitting agent ``a``'s corridor and the nearest of
    those it may follow: (number of hits, leader entry or -1, distance between its shape and the leader's)."""
    num_agents = alive.shape[0]
    hits = 0
    leader = -1
    best = np.inf
    best_y = np.inf
    best_x = np.inf
    for j in range(num_agents + 1):
        if j == a or (j < num_agents and not alive[j]):
            continue
        if not _corridor_hits(cpts, ccnt, cbox, cnum, spts, scnt, sbox, sgroup, a, lo, hi, skip, epts, ecnt, ebox,
                              enum, ebb, j, groups):
            continue
        hits += 1
        if excluded[a, j]:
            continue
        d = _entries_distance(epts, ecnt, ebox, enum, ebb, a, j)
        # STRtree.nearest: ties go to the entry first in the tree's leaf order (envelope centre y, then x)
        cy = ebb[j, 0, 1] + ebb[j, 0, 3]
        cx = ebb[j, 0, 0] + ebb[j, 0, 2]
        if d < best or (d == best and (cy < best_y or (cy == best_y and cx < best_x))):
            best, best_y, best_x, leader = d, cy, cx, j
    return hits, leader, best


@njit(cache=True, error_model="numpy")
def idm_step(v, target_speed, gap, lead_speed, rear, min_gap, headway, accel_max, decel_max, exponent, step_s):
    """nuPlan ``IDMPolicy.solve_forward_euler_idm_policy`` from progress 0, then ``IDMAgent.propagate``:
    (progress advance, new speed). Same operation order as nuPlan, and C ``pow`` as Python's ``**``."""
    s_star = min_gap + v * headway + (v * (v - lead_speed)) / (2 * math.sqrt(accel_max * decel_max))
    s_alpha = max(gap - 0.0 - rear, min_gap)  # clamped to avoid zero division
    accel = accel_max * (1 - math.pow(v / target_speed, exponent) - math.pow(s_star / s_alpha, 2.0))
    return 0.0 + step_s * v, max(v + step_s * min(max(-decel_max, accel), accel_max), 0.0)


@njit(cache=True, error_model="numpy")
def _parked(parked_box, eligible, boxes, alive, out):
    """NAVSIM's parked vehicles of a frame: each eligible one unless it overlaps a simulated agent or a parked
    vehicle kept before it."""
    for p in range(parked_box.shape[0]):
        out[p] = False
        if not eligible[p]:
            continue
        free = True
        for a in range(alive.shape[0]):
            if alive[a] and convex_intersect(parked_box[p], 4, boxes[a], 4):
                free = False
                break
        if free:
            for q in range(p):
                if out[q] and convex_intersect(parked_box[p], 4, parked_box[q], 4):
                    free = False
                    break
        out[p] = free


# ----------------------------------------------------------------------------------------------------------------
# The rollout


@njit(cache=True, error_model="numpy")
def idm_rollout(ego_states, ego_length, ego_width, progress0, speed0, target_speed, length, width, initial_box,
                path_xy, path_s, path_h, path_n, quads, cut, turn, spts, scnt, sbox, sgroup, max_entry_pieces,
                excluded, ego_like, parked_box, parked_eligible, params, out_pose, out_alive, out_parked, out_lead):
    """Roll the agents out against every row of ``ego_states`` (R, T, 11).

    Agents: ``progress0`` / ``speed0`` / ``target_speed`` / ``length`` / ``width`` (A,), ``initial_box`` (A, 4, 2)
    the box snapped onto the baseline. Paths: ``path_xy`` (A, K, 2), progress ``path_s``, unwrapped heading
    ``path_h``, length ``path_n``; from ``path_buffer_pieces`` at each agent's half width: ``quads`` (A, K-1, 4, 2),
    ``cut`` / ``turn`` (A, K) and the static pieces ``spts`` / ``scnt`` / ``sbox`` / ``sgroup`` (module docstring).
    ``max_entry_pieces`` bounds an agent shape's pieces. ``excluded`` (A, A+1): occupancy entries an agent may not
    take as leader (nuPlan drops ids that are substrings of the agent's token; column A is the ego),
    ``ego_like`` (A+1,): entries whose id contains "ego" (nuPlan then uses the ego's speed and heading). Parked
    vehicles: ``parked_box`` (P, 4, 2) and whether they qualify at all. ``params`` = (min gap, headway, accel
    max, decel max, exponent, step, radius).

    Outputs for steps 1..T-1: ``out_pose`` (R, T, A, 3) x, y, heading; ``out_alive`` (R, T, A);
    ``out_parked`` (R, T, P); ``out_lead`` (R, T, A, 3) gap, leader speed along the agent and leader entry (-1:
    the end of its path) of each agent's IDM step (diagnostics).
    """
    min_gap, headway, accel_max, decel_max, exponent, step_s, radius = params
    num_rows, num_steps = ego_states.shape[0], ego_states.shape[1]
    num_agents = progress0.shape[0]
    max_points = max(spts.shape[2], MIN_POINTS)
    ego = num_agents
    epts = np.zeros((num_agents + 1, max_entry_pieces, max_points, 2))
    ecnt = np.zeros((num_agents + 1, max_entry_pieces), dtype=np.int64)
    ebox = np.zeros((num_agents + 1, max_entry_pieces, 7))
    enum = np.zeros(num_agents + 1, dtype=np.int64)
    ebb = np.zeros((num_agents + 1, 1, 4))
    cpts = np.zeros((1, MAX_OWN, max_points, 2))  # the corridor's own pieces
    ccnt = np.zeros((1, MAX_OWN), dtype=np.int64)
    cbox = np.zeros((1, MAX_OWN, 7))
    quad_a = np.empty((4, 2))
    quad_b = np.empty((4, 2))
    scratch = np.empty((MIN_POINTS, 2))
    own = np.empty((MAX_OWN, max_points, 2))
    own_cnt = np.zeros(MAX_OWN, dtype=np.int64)
    groups = np.empty(sgroup.shape[1], dtype=np.int64)
    progress = np.empty(num_agents)
    speed = np.empty(num_agents)
    alive = np.empty(num_agents, dtype=np.bool_)
    boxes = np.empty((num_agents, 4, 2))
    for r in range(num_rows):
        for a in range(num_agents):
            progress[a] = progress0[a]
            speed[a] = speed0[a]
            alive[a] = True
            enum[a] = 0
            _push(epts, ecnt, ebox, enum, a, initial_box[a], 4)
            _finish(ebox, enum, ebb, a)
        for t in range(1, num_steps):
            ex = ego_states[r, t - 1, 0]
            ey = ego_states[r, t - 1, 1]
            eh = ego_states[r, t - 1, 2]
            ego_speed = math.hypot(ego_states[r, t - 1, 3], ego_states[r, t - 1, 4])
            enum[ego] = 0
            box_corners_into(ex, ey, eh, ego_length / 2.0, ego_width / 2.0, quad_a)
            _push(epts, ecnt, ebox, enum, ego, quad_a, 4)
            _finish(ebox, enum, ebb, ego)
            for a in range(num_agents):
                if alive[a]:
                    x, y, _ = _pose(path_xy, path_s, path_h, path_n, a, progress[a])
                    dx = ex - x
                    dy = ey - y
                    if math.sqrt(dx * dx + dy * dy) > radius:
                        alive[a] = False
            for a in range(num_agents):
                if not alive[a]:
                    continue
                n = path_n[a]
                s = path_s[a]
                bounded = max(s[0], min(progress[a], s[n - 1]))
                ax, ay, ah = path_state(path_xy[a], s, path_h[a], n, bounded)
                cnum, lo, hi, skip = _corridor(path_xy[a], quads[a], cut[a], turn[a], n, s, bounded, ax, ay,
                                               width[a] / 2.0, cpts, ccnt, cbox, own, own_cnt, quad_a, quad_b,
                                               scratch)
                hits, leader, best = _leader(a, alive, cpts, ccnt, cbox, cnum, spts, scnt, sbox, sgroup, lo, hi,
                                             skip, epts, ecnt, ebox, enum, ebb, excluded, groups)
                if hits > 0 and leader >= 0:
                    if ego_like[leader]:
                        lead_speed = ego_speed
                        relative = eh - ah
                    else:
                        _, _, lh = _pose(path_xy, path_s, path_h, path_n, leader, progress[leader])
                        lead_speed = speed[leader]
                        relative = lh - ah
                    lead_speed = lead_speed * math.cos(principal_value(relative))
                    gap = best
                    rear = 0.0
                else:  # free road: brake for the end of the path as for a standing car
                    lead_speed = 0.0
                    gap = s[n - 1] - progress[a]
                    rear = length[a] / 2
                out_lead[r, t, a, 0] = gap
                out_lead[r, t, a, 1] = lead_speed
                out_lead[r, t, a, 2] = leader
                advance, speed[a] = idm_step(speed[a], target_speed[a], gap, lead_speed, rear, min_gap, headway,
                                             accel_max, decel_max, exponent, step_s)
                progress[a] += advance
                _footprint(path_xy, path_s, path_h, n, a, progress[a], speed[a], length[a], width[a], headway, quads,
                           cut, turn, spts, scnt, sbox, epts, ecnt, ebox, enum, ebb, own, own_cnt, quad_a, quad_b,
                           scratch)
            # the frame: simulated agents at their bounded progress, then the parked vehicles that fit
            for a in range(num_agents):
                out_alive[r, t, a] = alive[a]
                if alive[a]:
                    x, y, h = _pose(path_xy, path_s, path_h, path_n, a, progress[a])
                    out_pose[r, t, a, 0] = x
                    out_pose[r, t, a, 1] = y
                    out_pose[r, t, a, 2] = h
                    box_corners_into(x, y, h, length[a] / 2.0, width[a] / 2.0, boxes[a])
            _parked(parked_box, parked_eligible, boxes, alive, out_parked[r, t])


@njit(cache=True, error_model="numpy")
def _footprint(path_xy, path_s, path_h, n, a, progress, velocity, length, width, headway, quads, cut, turn, spts,
               scnt, sbox, epts, ecnt, ebox, enum, ebb, own, own_cnt, quad_a, quad_b, scratch):
    """Entry ``a`` := nuPlan's ``projected_footprint``: the box at the (bounded) progress united with the buffer of
    ``trim_path(progress - L/2, progress + L/2 + v * headway)``, both ends clamped to the path."""
    xy, s, h = path_xy[a], path_s[a], path_h[a]
    first, last = s[0], s[n - 1]
    half_width = width / 2.0
    enum[a] = 0
    start = max(first, min(progress - length / 2, last))
    end = max(first, min(progress + length / 2 + velocity * headway, last))
    front = search_sorted(s, n, start, True)
    tail = search_sorted(s, n, end, False) - 1  # last index with s < end, or -1
    if front >= n:  # nuPlan returns the path's last two points
        segment_quad_into(xy[n - 2, 0], xy[n - 2, 1], xy[n - 1, 0], xy[n - 1, 1], half_width, quad_a)
        _push(epts, ecnt, ebox, enum, a, quad_a, 4)
    elif tail < 0:  # ... or its first two
        segment_quad_into(xy[0, 0], xy[0, 1], xy[1, 0], xy[1, 1], half_width, quad_a)
        _push(epts, ecnt, ebox, enum, a, quad_a, 4)
    else:
        sx, sy, _ = path_state(xy, s, h, n, start)
        ex, ey, _ = path_state(xy, s, h, n, end)
        if front > tail:  # both ends on one segment
            segment_quad_into(sx, sy, ex, ey, half_width, quad_a)
            _push(epts, ecnt, ebox, enum, a, quad_a, 4)
        else:
            count, lo, hi, skip0, skip1 = _stretch(xy, quads[a], cut[a], turn[a], n, sx, sy, front, tail, ex, ey,
                                                   half_width, own, own_cnt, quad_a, quad_b, scratch)
            for j in range(count):
                _push(epts, ecnt, ebox, enum, a, own[j], own_cnt[j])
            _push_static(epts, ecnt, ebox, enum, a, spts, scnt, sbox, a, lo, hi, skip0, skip1)
    bounded = max(first, min(progress, last))
    bx, by, bh = path_state(xy, s, h, n, bounded)
    box_corners_into(bx, by, bh, length / 2.0, width / 2.0, quad_a)
    _push(epts, ecnt, ebox, enum, a, quad_a, 4)
    _finish(ebox, enum, ebb, a)
