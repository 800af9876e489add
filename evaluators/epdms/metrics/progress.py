"""Ego progress (EP): box-centre progress along the PDM centerline, normalised against the PDM reference.

Raw progress = projection of the centre at t = 4 s minus at t = 0 (GEOS projection, clamped to the line's ends),
clipped at 0. The normaliser is the largest progress among the scored batch [reference, proposal] *masked by
each row's own multiplicative product*; below 5 m every row gets EP = 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from evaluators.epdms.geometry import project_onto_polyline


@njit(cache=True, error_model="numpy")
def raw_progress(coords, centerline):
    num_rows, last = coords.shape[0], coords.shape[1] - 1
    progress = np.zeros(num_rows)
    for r in range(num_rows):
        start = project_onto_polyline(coords[r, 0, 4, 0], coords[r, 0, 4, 1], centerline)
        end = project_onto_polyline(coords[r, last, 4, 0], coords[r, last, 4, 1], centerline)
        progress[r] = max(end - start, 0.0)
    return progress


def normalized_progress(progress: np.ndarray, normalizer: np.ndarray, threshold_m: float) -> np.ndarray:
    """EP per row given each row's normaliser (max masked progress of its scoring batch)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(progress / normalizer, 0.0, 1.0)
    return np.where(normalizer > threshold_m, ratio, 1.0)
