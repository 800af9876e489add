"""No at-fault collisions (NC) and time to collision (TTC), nuPlan's rules as NAVSIM applies them.

NC, per step t = 0..40 and object hit by the ego box: ego stopped -> not at fault; object stopped at its first
appearance (or static) -> at fault; object behind the rear axle (> 150 deg) -> not at fault; the ego's front
edge touches it -> at fault; otherwise lateral, at fault only while the ego straddles lanes or leaves the
drivable area. At fault costs 0 for agents and 0.5 for static objects; an object of a not-at-fault collision
is ignored for the rest of that row.

TTC, per t = 0..31 (outer) and projection 0, 0.3, 0.6, 0.9 s (inner): the ego box moved along its heading at its
current speed, against the objects of step t + offset. Hits count while the ego moves (>= 5 mm/s) if the object
is ahead (< 30 deg) or, when the ego straddles lanes / is off-road / has its rear axle in an intersection, not
behind; other hits make the object ignored for the remaining (t, offset) pairs of that row.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from evaluators.epdms.geometry import convex_quads_intersect, point_in_polygon, segment_intersects_quad
from evaluators.epdms.metrics.areas import MULTIPLE_LANES, NON_DRIVABLE
from evaluators.epdms.scene import KIND_INTERSECTION
from irlvla_bench.types import StateIndex

_X, _Y, _H = int(StateIndex.X), int(StateIndex.Y), int(StateIndex.HEADING)
_VX, _VY = int(StateIndex.VELOCITY_X), int(StateIndex.VELOCITY_Y)


@njit(cache=True, error_model="numpy", inline="always")
def relative_angle(ex, ey, heading, ax, ay):
    """nuPlan's ``get_agent_relative_angle``: NaN when the points coincide or rounding pushes |cos| past 1."""
    vx = ax - ex
    vy = ay - ey
    norm = np.sqrt(vx * vx + vy * vy)
    return np.arccos(np.cos(heading) * (vx / norm) + np.sin(heading) * (vy / norm))


@njit(cache=True, error_model="numpy")
def no_at_fault_collisions(states, coords, flags, obs_index, corners, centers, radius, present, is_agent,
                           first_stopped, ego_radius, stopped_speed, behind_rad, static_score):
    num_rows, num_steps = states.shape[0], states.shape[1]
    num_objects = corners.shape[2]
    scores = np.ones(num_rows)
    first_time = np.full(num_rows, np.inf)
    ego = np.empty((4, 2))
    for r in range(num_rows):
        b = obs_index[r]
        ignored = np.zeros(num_objects, dtype=np.bool_)
        for t in range(num_steps):
            ego[:, :] = coords[r, t, :4, :]
            cx, cy = coords[r, t, 4, 0], coords[r, t, 4, 1]
            for o in range(num_objects):
                if not present[b, t, o] or ignored[o]:
                    continue
                dx = centers[b, t, o, 0] - cx
                dy = centers[b, t, o, 1] - cy
                reach = ego_radius + radius[b, t, o]
                if dx * dx + dy * dy > reach * reach * 1.0000001:
                    continue
                if not convex_quads_intersect(ego, corners[b, t, o]):
                    continue
                speed = np.hypot(states[r, t, _VX], states[r, t, _VY])
                at_fault = False
                if speed <= stopped_speed:
                    at_fault = False  # stopped ego
                elif first_stopped[b, o]:
                    at_fault = True  # stopped track
                elif relative_angle(states[r, t, _X], states[r, t, _Y], states[r, t, _H],
                                    centers[b, t, o, 0], centers[b, t, o, 1]) > behind_rad:
                    at_fault = False  # rear collision
                elif segment_intersects_quad(ego[0, 0], ego[0, 1], ego[3, 0], ego[3, 1], corners[b, t, o]):
                    at_fault = True  # front bumper
                else:
                    at_fault = flags[r, t, MULTIPLE_LANES] or flags[r, t, NON_DRIVABLE]  # lateral
                if at_fault:
                    cost = 0.0 if is_agent[o] else static_score
                    scores[r] = min(scores[r], cost)
                    first_time[r] = min(first_time[r], t)
                else:
                    ignored[o] = True
    return scores, first_time


@njit(cache=True, error_model="numpy")
def time_to_collision(states, coords, flags, obs_index, corners, centers, radius, present, offsets, interval_s,
                      last_step, ego_radius, stopped_speed, ahead_rad, behind_rad, kinds, bbox, swap, bucket_lo,
                      bucket_inv, bucket_count, bucket_base, bucket_ptr, bucket_items, edges):
    num_rows = states.shape[0]
    num_objects = corners.shape[2]
    scores = np.ones(num_rows)
    first_time = np.full(num_rows, np.inf)
    moved = np.empty((4, 2))
    for r in range(num_rows):
        b = obs_index[r]
        ignored = np.zeros(num_objects, dtype=np.bool_)
        for t in range(last_step + 1):
            speed = np.hypot(states[r, t, _VX], states[r, t, _VY])
            heading = states[r, t, _H]
            step_x = np.cos(heading) * speed
            step_y = np.sin(heading) * speed
            for k in range(offsets.shape[0]):
                now = t + offsets[k]
                delta_t = float(offsets[k]) * interval_s
                for c in range(4):
                    moved[c, 0] = coords[r, t, c, 0] + step_x * delta_t
                    moved[c, 1] = coords[r, t, c, 1] + step_y * delta_t
                cx = coords[r, t, 4, 0] + step_x * delta_t
                cy = coords[r, t, 4, 1] + step_y * delta_t
                for o in range(num_objects):
                    if not present[b, now, o] or ignored[o]:
                        continue
                    dx = centers[b, now, o, 0] - cx
                    dy = centers[b, now, o, 1] - cy
                    reach = ego_radius + radius[b, now, o]
                    if dx * dx + dy * dy > reach * reach * 1.0000001:
                        continue
                    if not convex_quads_intersect(moved, corners[b, now, o]):
                        continue
                    if speed < stopped_speed:
                        continue
                    angle = relative_angle(states[r, t, _X], states[r, t, _Y], heading,
                                           centers[b, now, o, 0], centers[b, now, o, 1])
                    counts = angle < ahead_rad
                    if not counts and not angle > behind_rad:
                        exposed = flags[r, t, MULTIPLE_LANES] or flags[r, t, NON_DRIVABLE]
                        if not exposed:
                            for p in range(kinds.shape[0]):
                                if (kinds[p] & KIND_INTERSECTION) and point_in_polygon(
                                        states[r, t, _X], states[r, t, _Y], p, bbox, swap, bucket_lo, bucket_inv,
                                        bucket_count, bucket_base, bucket_ptr, bucket_items, edges):
                                    exposed = True
                                    break
                        counts = exposed
                    if counts:
                        scores[r] = 0.0
                        first_time[r] = min(first_time[r], t)
                    else:
                        ignored[o] = True
    return scores, first_time
