"""The per-candidate EPDMS the reward world model learns and is judged on, and the EC labels it needs.

EPDMS of one candidate = NC x DAC x DDC x TLC x (w_EP EP + w_TTC TTC + w_LK LK + w_HC HC + w_EC EC) / sum(w)
with the evaluator's own weights (``EPDMSConfig.weighted_metrics_array``: 5, 5, 2, 2, 2), i.e. the row score
NAVSIM's two-stage aggregation gives a frame (``evaluators.epdms.aggregate._row_score``).

EC is a two-frame metric: it compares the candidate's simulated states with those of the plan the agent held
one frame (0.5 s) earlier. A candidate has no "previous plan" of its own, so the labels use the *expert's*:
the plan that, from the previous logged ego state, reaches the current ego pose now and then follows the
scene's anchor (the human future; the PDM-Closed reference for synthetic frames, which have no human future).
It is simulated from the previous ego state with the same LQR tracker and compared exactly as NAVSIM compares
two frames (``extended_comfort`` with the 0.5 s overlap). So EC = 1 means "consistent with what the expert
planned half a second ago"; the RWM takes that previous plan as an input, and PPO may substitute the
policy's own previous plan. Without a previous frame in the history EC is NaN and the EPDMS falls back to the
one-stage score (``score_single_frame``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from evaluators.epdms import simulation
from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.metrics.comfort import extended_comfort
from evaluators.epdms.score import MULTIPLICATIVE, WEIGHTED
from irlvla_bench.labelling.trajectories import previous_frame_index, previous_plan
from irlvla_bench.types import ScoringCase

EXTENDED_COMFORT = "extended_comfort"
# EC only uses rear-axle acceleration magnitudes and headings (as in evaluators.epdms.aggregate).
_EC_REAR_AXLE_TO_CENTER = 0.0


def epdms(metrics: Mapping[str, np.ndarray], ec: np.ndarray, config: EPDMSConfig = NAVSIM_V2) -> np.ndarray:
    """Per-row EPDMS from the eight sub-metrics and EC (all arrays of one length)."""
    product = np.ones_like(np.asarray(ec, dtype=np.float64))
    for name in MULTIPLICATIVE:
        product = product * metrics[name]
    weights = np.asarray(config.weighted_metrics_array)
    values = [metrics[name] for name in WEIGHTED] + [ec]
    weighted = sum(w * v for w, v in zip(weights, values)) / weights.sum()
    return product * weighted


def previous_plan_states(case: ScoringCase, config: EPDMSConfig = NAVSIM_V2,
                         poses: np.ndarray | None = None) -> tuple[np.ndarray, int] | None:
    """(41, 11) simulated states of the plan held one frame earlier and the overlap in 0.1 s steps, or None
    without a previous frame. The plan is the expert's, or ``poses``: (8, 3) a plan an agent made at that frame,
    in that frame's ego frame. Either is simulated from the previous logged ego state, as the evaluator simulates
    the previous frame's proposal."""
    if poses is None:
        plan = previous_plan(case, config.max_prev_frame_offset_s)
        if plan is None:
            return None
        poses, index = plan
    else:
        index = previous_frame_index(case, config.max_prev_frame_offset_s)
        if index is None:
            return None
    prev = case.human_past[index]
    global_poses = simulation.proposal_poses_to_global(prev.rear_axle, np.asarray(poses, dtype=np.float64)[None])
    reference = simulation.sample_poses_10hz(prev.rear_axle, prev.time_us, global_poses)
    states = simulation.simulate(prev.to_state_array(), reference, simulation.TrackerConfig())[0]
    overlap = int(round((case.time_us - prev.time_us) * 1e-6 / config.interval_s))
    return states, overlap


def extended_comfort_labels(case: ScoringCase, states: np.ndarray, config: EPDMSConfig = NAVSIM_V2,
                            previous_poses: np.ndarray | None = None) -> np.ndarray:
    """EC of (N, 41, 11) simulated candidate states against the plan held one frame earlier (NaN without a
    previous frame): the expert's, or ``previous_poses`` (see ``previous_plan_states``)."""
    previous = previous_plan_states(case, config, previous_poses)
    if previous is None:
        return np.full(len(states), np.nan)
    prev_states, overlap = previous
    return extended_comfort(states, np.broadcast_to(prev_states, states.shape), config.interval_s, overlap,
                            _EC_REAR_AXLE_TO_CENTER, config.comfort, config.extended_comfort)
