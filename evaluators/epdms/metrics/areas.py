"""Ego-area flags and the area metrics DAC and DDC.

Per simulated step NAVSIM tests the four corners and the centre of the ego box against the drivable map
(``shapely.vectorized.contains``, so a point on a boundary is outside):
* multiple lanes: corners touch more than one lane/connector polygon and no single one holds all four;
* non-drivable: some corner is in none of {roadblock, intersection, carpark, drivable area};
* oncoming traffic: the centre is in no on-route lane/connector (so off-road and carpark driving count too).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from evaluators.epdms.geometry import CELL_BOUNDARY, CELL_INSIDE, cell_of, classify_cells, point_in_polygon
from evaluators.epdms.scene import KIND_DRIVABLE, KIND_INTERSECTION, KIND_LANE, KIND_ON_ROUTE

# Column order of the flags array.
MULTIPLE_LANES, NON_DRIVABLE, ONCOMING, CENTER_IN_INTERSECTION = 0, 1, 2, 3
CENTER = 4  # index of the centre in the (FL, RL, RR, FR, centre) coordinate array


def ego_area_flags(coords, kinds, origin, cell, states, ready, *polygons):
    """(R, T, 5, 2) ego coordinates -> (R, T, 4) bool flags (see module docstring)."""
    classify_cells(np.ascontiguousarray(coords).reshape(-1, 2), origin, cell, states, ready, *polygons)
    return _ego_area_flags(coords, kinds, origin, cell, states, *polygons)


@njit(cache=True, error_model="numpy")
def _ego_area_flags(coords, kinds, origin, cell, states, bbox, swap, bucket_lo, bucket_inv, bucket_count,
                    bucket_base, bucket_ptr, bucket_items, edges):
    num_rows, num_steps = coords.shape[0], coords.shape[1]
    flags = np.zeros((num_rows, num_steps, 4), dtype=np.bool_)
    num_polygons = kinds.shape[0]
    cell_i = np.empty(5, dtype=np.int64)
    cell_j = np.empty(5, dtype=np.int64)
    for r in range(num_rows):
        for t in range(num_steps):
            for c in range(5):
                cell_i[c], cell_j[c] = cell_of(coords[r, t, c, 0], coords[r, t, c, 1], origin, cell, states)
            drivable_corners = 0  # bit c: corner c is in some drivable polygon
            lanes_touched = 0
            lane_holds_all = False
            center_on_route = False
            center_in_intersection = False
            for p in range(num_polygons):
                kind = kinds[p]
                if (kind & (KIND_LANE | KIND_DRIVABLE)) != 0:
                    inside = 0
                    for c in range(4):
                        if cell_i[c] < 0:
                            continue
                        # The grid answers for cells away from the boundary; only the rest need the ray test
                        # (checked here, not in a callee: numba calls with a dozen array arguments are costly).
                        state = states[p, cell_i[c], cell_j[c]]
                        hit = state == CELL_INSIDE
                        if state == CELL_BOUNDARY:
                            hit = point_in_polygon(coords[r, t, c, 0], coords[r, t, c, 1], p, bbox, swap, bucket_lo,
                                                   bucket_inv, bucket_count, bucket_base, bucket_ptr, bucket_items,
                                                   edges)
                        if hit:
                            inside += 1
                            if kind & KIND_DRIVABLE:
                                drivable_corners |= 1 << c
                    if kind & KIND_LANE:
                        if inside > 0:
                            lanes_touched += 1
                        if inside == 4:
                            lane_holds_all = True
                if (kind & (KIND_ON_ROUTE | KIND_INTERSECTION)) != 0 and not (center_on_route
                                                                            and center_in_intersection):
                    state = states[p, cell_i[CENTER], cell_j[CENTER]] if cell_i[CENTER] >= 0 else 0
                    hit = state == CELL_INSIDE
                    if state == CELL_BOUNDARY:
                        hit = point_in_polygon(coords[r, t, CENTER, 0], coords[r, t, CENTER, 1], p, bbox, swap,
                                               bucket_lo, bucket_inv, bucket_count, bucket_base, bucket_ptr,
                                               bucket_items, edges)
                    if hit:
                        if kind & KIND_ON_ROUTE:
                            center_on_route = True
                        if kind & KIND_INTERSECTION:
                            center_in_intersection = True
            flags[r, t, MULTIPLE_LANES] = lanes_touched > 1 and not lane_holds_all
            flags[r, t, NON_DRIVABLE] = drivable_corners != 0b1111
            flags[r, t, ONCOMING] = not center_on_route
            flags[r, t, CENTER_IN_INTERSECTION] = center_in_intersection
    return flags


def drivable_area_compliance(flags: np.ndarray) -> np.ndarray:
    """DAC: 0 if any step has a corner off the drivable area."""
    return np.where(flags[:, :, NON_DRIVABLE].any(axis=1), 0.0, 1.0)


@njit(cache=True, error_model="numpy")
def _oncoming_progress_max(coords, flags, window):
    num_rows, num_steps = coords.shape[0], coords.shape[1]
    result = np.zeros(num_rows)
    progress = np.zeros(num_steps)
    for r in range(num_rows):
        progress[0] = 0.0
        for t in range(1, num_steps):
            if flags[r, t, ONCOMING] and not flags[r, t, CENTER_IN_INTERSECTION]:
                dx = coords[r, t, CENTER, 0] - coords[r, t - 1, CENTER, 0]
                dy = coords[r, t, CENTER, 1] - coords[r, t - 1, CENTER, 1]
                progress[t] = np.sqrt(dx * dx + dy * dy)
            else:
                progress[t] = 0.0
        best = 0.0
        for t in range(num_steps):
            total = 0.0
            for k in range(max(0, t - window), t + 1):
                total += progress[k]
            best = max(best, total)
        result[r] = best
    return result


def driving_direction_compliance(coords: np.ndarray, flags: np.ndarray, config) -> np.ndarray:
    """DDC: the largest distance driven against traffic (outside intersections) within any 1 s window."""
    driven = _oncoming_progress_max(coords, flags, config.driving_direction_window)
    return np.where(
        driven < config.driving_direction_compliance_m,
        1.0,
        np.where(driven < config.driving_direction_violation_m, 0.5, 0.0),
    )
