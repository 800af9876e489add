"""Lane keeping (LK): the box centre stays > 0.5 m from the centerline for 2 s (20 consecutive steps).

Steps with the centre inside an intersection neither count nor reset the run.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from evaluators.epdms.geometry import farther_than
from evaluators.epdms.metrics.areas import CENTER_IN_INTERSECTION


@njit(cache=True, error_model="numpy")
def lane_keeping(coords, flags, required_steps, line, radius, swap, lo, inv, count, ptr, items):
    num_rows, num_steps = coords.shape[0], coords.shape[1]
    scores = np.ones(num_rows)
    for r in range(num_rows):
        run = 0
        for t in range(num_steps):
            if flags[r, t, CENTER_IN_INTERSECTION]:
                continue
            if farther_than(coords[r, t, 4, 0], coords[r, t, 4, 1], line, radius, swap, lo, inv, count, ptr, items):
                run += 1
            else:
                run = 0
            if run >= required_steps:
                scores[r] = 0.0
                break
    return scores
