"""NAVSIM's ``LogReplayTrafficAgents``: the logged future, minus whatever overlaps the ego at t = 0.

Any object (of any type) whose box intersects the ego's footprint in the first frame is removed from every
frame: it would otherwise count as an unavoidable collision.
"""

from __future__ import annotations

import numpy as np

from evaluators.epdms.geometry import convex_quads_intersect
from evaluators.epdms.traffic.base import Observation, box_corners, observation_from_tracks, register_policy
from irlvla_bench.types import StateIndex


def ego_footprint(state: np.ndarray, vehicle) -> np.ndarray:
    """(4, 2) corners of the ego's oriented box at one state (rear axle pose -> centred box)."""
    h = state[StateIndex.HEADING]
    cx = state[StateIndex.X] + vehicle.rear_axle_to_center * np.cos(h)
    cy = state[StateIndex.Y] + vehicle.rear_axle_to_center * np.sin(h)
    return box_corners(np.array([cx, cy, h, vehicle.length, vehicle.width]))


@register_policy("log_replay")
class LogReplayTraffic:
    name = "log_replay"
    reacts_to_ego = False

    def observe(self, scene, ego_states: np.ndarray) -> Observation:
        tracks = scene.case.tracked_objects
        ego = ego_footprint(scene.initial_state, scene.vehicle)
        corners = box_corners(np.where(tracks.present[0][:, None], tracks.boxes[0], 0.0))
        overlapping = np.array(
            [tracks.present[0, o] and convex_quads_intersect(ego, corners[o]) for o in range(tracks.num_objects)],
            dtype=bool,
        )
        kept = tracks.select(~overlapping) if overlapping.any() else tracks
        return observation_from_tracks(kept, scene.config.collision_stopped_speed)
