"""Scoring for planners (PDM-Closed's proposal selection): track 10 Hz target states with NAVSIM's tracker and
return the raw metrics the planner ranks by. No PDM reference, no human filter, no history: a planner scoring
its own candidates needs none of them, and NAVSIM's ``PDMScorer`` inside PDM-Closed uses none either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluators.epdms import simulation
from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.scene import prepare_scene
from evaluators.epdms.score import _TRACKER, evaluate_rows
from evaluators.epdms.traffic import TrafficPolicy, get_policy
from irlvla_bench.types import ScoringCase


@dataclass(frozen=True)
class PlanScores:
    multiplicative: np.ndarray  # (N,) NC * DAC * DDC * TLC, unfiltered
    progress_m: np.ndarray  # (N,) raw progress along the centerline
    time_to_collision_within_bound: np.ndarray  # (N,)
    lane_keeping: np.ndarray  # (N,)
    simulated_states: np.ndarray  # (N, 41, 11)


def score_target_states(case: ScoringCase, target_states: np.ndarray, *, traffic: str | TrafficPolicy = "log_replay",
                        config: EPDMSConfig = NAVSIM_V2) -> PlanScores:
    """``target_states`` (N, 41, >=3) global rear-axle x, y, heading at 10 Hz from the case's time; the case's
    tracked objects are the world the candidates are scored against (a planner passes its own forecast)."""
    target = np.asarray(target_states, dtype=np.float64)
    if target.ndim != 3 or target.shape[1] != config.num_poses + 1 or target.shape[2] < 3:
        raise ValueError(f"target_states must be (N, {config.num_poses + 1}, >=3), got {target.shape}")
    scene = prepare_scene(case, config)
    states = simulation.simulate(scene.initial_state, np.ascontiguousarray(target[:, :, :3]), _TRACKER)
    policy = get_policy(traffic) if isinstance(traffic, str) else traffic
    observation = policy.observe(scene, states)
    n = len(states)
    index = np.zeros(n, dtype=np.int64) if observation.batch == 1 else np.arange(n, dtype=np.int64)
    rows = evaluate_rows(scene, states, observation, index, with_history=False)
    return PlanScores(
        multiplicative=np.asarray(rows.multiplicative),
        progress_m=np.asarray(rows.progress_m),
        time_to_collision_within_bound=np.asarray(rows.values["time_to_collision_within_bound"]),
        lane_keeping=np.asarray(rows.values["lane_keeping"]),
        simulated_states=states,
    )
