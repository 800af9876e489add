"""Scene kinds for the fidelity report's breakdown, derived from the scoring case alone.

The generated world has no scenario tags, so a kind is read off the expert's manoeuvre and the map around it,
in priority order: ``stationary`` (the ego stands and stays), ``turn`` (the expert's heading changes by more
than ~30 deg in 4 s), ``lane_change`` (large lateral displacement without a turn), ``junction`` (the expert's
path enters an intersection polygon), ``straight`` (everything else).
"""

from __future__ import annotations

import numpy as np
import shapely

from irlvla_bench.labelling.trajectories import anchor_poses, to_global
from irlvla_bench.types import MapLayer, ScoringCase

KINDS = ("stationary", "turn", "lane_change", "junction", "straight")
STATIONARY_SPEED = 0.5  # m/s
STATIONARY_TRAVEL_M = 2.0
TURN_RAD = 0.5
LANE_CHANGE_M = 2.0


def scene_kind(case: ScoringCase) -> str:
    anchor, _ = anchor_poses(case)
    speed = float(np.hypot(*case.ego.velocity))
    travel = float(np.hypot(*anchor[-1, :2]))
    if speed < STATIONARY_SPEED and travel < STATIONARY_TRAVEL_M:
        return "stationary"
    if abs(float(anchor[-1, 2])) > TURN_RAD:
        return "turn"
    if abs(float(anchor[-1, 1])) > LANE_CHANGE_M:
        return "lane_change"
    points = to_global(case.ego.rear_axle, anchor)[:, :2]
    for obj in case.map_objects:
        if obj.layer == MapLayer.INTERSECTION:
            polygon = shapely.Polygon(obj.polygon, list(obj.holes))
            if shapely.contains_xy(polygon, points[:, 0], points[:, 1]).any():
                return "junction"
    return "straight"
