"""Traffic light compliance (TLC): the ego box touches a red on-route lane connector at any step, t = 0 included."""

from __future__ import annotations

import numpy as np
from numba import njit

from evaluators.epdms.geometry import quad_intersects_polygon


@njit(cache=True, error_model="numpy")
def traffic_light_compliance(coords, red_active, bbox, swap, bucket_lo, bucket_inv, bucket_count, bucket_base,
                             bucket_ptr, bucket_items, edges, edge_ptr):
    num_rows, num_steps = coords.shape[0], coords.shape[1]
    scores = np.ones(num_rows)
    num_lights = red_active.shape[1]
    if num_lights == 0:
        return scores
    ego = np.empty((4, 2))
    for r in range(num_rows):
        for t in range(num_steps):
            ego[:, :] = coords[r, t, :4, :]
            hit = False
            for light in range(num_lights):
                if red_active[t, light] and quad_intersects_polygon(ego, light, bbox, swap, bucket_lo, bucket_inv,
                                                                    bucket_count, bucket_base, bucket_ptr,
                                                                    bucket_items, edges, edge_ptr):
                    hit = True
                    break
            if hit:
                scores[r] = 0.0
                break
    return scores
