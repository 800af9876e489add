"""Candidate poses -> the ego states the scorer will judge (NumPy + numba, no torch).

NAVSIM never scores the submitted poses: it resamples them at 10 Hz and lets an LQR tracker drive a kinematic
bicycle along them (``evaluators.epdms.simulation``). Where the poses disagree with the ego's current state
(speed, heading, curvature) the simulated path departs from them by metres: evaluated on the raw poses, the
drivable-area metric of our labelled candidates disagrees with the label for 11.5 % of them. So the RWM rolls
every candidate out with that same tracker and bicycle model before reading the scene: the ego's own,
scene-independent dynamics, known exactly, ~60 000 trajectories per second on one core. Everything that
involves the scene (map, route, other agents, lights, the metrics' rules) is left to the network.

All states are in the ego frame at t = 0 (rear axle at the origin, heading 0); velocities and accelerations
are body-frame values, as in ``StateIndex``.
"""

from __future__ import annotations

import numpy as np

from evaluators.epdms import simulation
from irlvla_bench.labelling.trajectories import to_ego_frame
from irlvla_bench.types import EgoState, ScoringCase, StateIndex

NUM_STATES = 41
_TRACKER = simulation.TrackerConfig()


def local_state(origin: np.ndarray, state: EgoState) -> np.ndarray:
    """(11,) state array of ``state`` with its pose in the frame of the global pose ``origin``."""
    array = state.to_state_array()
    array[:3] = to_ego_frame(np.asarray(origin, dtype=np.float64), np.asarray(state.rear_axle, dtype=np.float64))
    return array


def initial_state(case: ScoringCase) -> np.ndarray:
    return local_state(case.ego.rear_axle, case.ego)


def rollout(start: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """(N, 41, 11) float32 simulated states of (N, 8, 3) poses given in the frame of the (11,) ``start`` state
    (whose own pose must be that frame's origin)."""
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 8, 3)
    if not len(poses):
        return np.zeros((0, NUM_STATES, simulation.STATE_SIZE), dtype=np.float32)
    reference = simulation.sample_poses_10hz(np.zeros(3), 0, poses)
    return simulation.simulate(np.asarray(start, dtype=np.float64), reference, _TRACKER).astype(np.float32)


def rollout_in_frame(start: np.ndarray, poses_in_start_frame: np.ndarray, frame_pose: np.ndarray) -> np.ndarray:
    """Roll out from a state that is not at the origin (e.g. the previous frame's ego) and express the result in
    the current frame: ``start`` (11,) and ``frame_pose`` (3,) are in the current frame; the poses are relative
    to ``frame_pose``."""
    origin_state = np.asarray(start, dtype=np.float64).copy()
    origin_state[:3] = 0.0
    states = rollout(origin_state, poses_in_start_frame).astype(np.float64)
    c, s = np.cos(frame_pose[2]), np.sin(frame_pose[2])
    x, y = states[..., StateIndex.X].copy(), states[..., StateIndex.Y].copy()
    states[..., StateIndex.X] = frame_pose[0] + c * x - s * y
    states[..., StateIndex.Y] = frame_pose[1] + s * x + c * y
    states[..., StateIndex.HEADING] = np.arctan2(np.sin(states[..., StateIndex.HEADING] + frame_pose[2]),
                                                 np.cos(states[..., StateIndex.HEADING] + frame_pose[2]))
    return states.astype(np.float32)


def previous_plan_states(previous_state: np.ndarray, plan: np.ndarray) -> np.ndarray:
    """(41, 11) rollout of a previous frame's plan. ``previous_state`` (11,) is the previous ego state in the
    current frame, ``plan`` (9, 3) the plan in the current frame at t = -0.5 .. 3.5 s (its first pose is the
    previous ego pose)."""
    plan = np.asarray(plan, dtype=np.float64)
    frame = plan[0]
    relative = to_ego_frame(frame, plan[1:])
    return rollout_in_frame(previous_state, relative[None], frame)[0]
