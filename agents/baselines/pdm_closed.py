"""PDM-Closed (privileged): the metric cache's PDM-Closed reference, as an agent.

The case holds the planner's output as global rear-axle poses every ``pdm_reference_interval_s`` from the
current frame (NAVSIM caches it at 0.1 s). The agent resamples it at 0.5 .. 4.0 s (linear in x, y and the
unwrapped heading; at NAVSIM's 0.1 s the samples fall on knots, so they are the reference poses themselves)
and expresses the poses in the current ego frame. The origin is ``case.ego.rear_axle``, the state the
scorer starts its simulation from.
"""

from __future__ import annotations

import numpy as np

from agents.base import NUM_POSES, POSE_INTERVAL_S, Agent, AgentInput, SensorConfig, Trajectory
from agents.baselines.poses import resample, to_ego_frame
from irlvla_bench.types import ScoringCase

OUTPUT_TIMES_S = np.arange(1, NUM_POSES + 1) * POSE_INTERVAL_S


def scoring_case(agent_input: AgentInput, agent_name: str) -> ScoringCase:
    """The privileged case of an input, checked to be the case of the same frame."""
    case = agent_input.privileged
    if not isinstance(case, ScoringCase):
        raise ValueError(f"{agent_name} is privileged: AgentInput.privileged must be the frame's ScoringCase, "
                         f"got {type(case).__name__}")
    if case.token != agent_input.token:
        raise ValueError(f"{agent_name}: the scoring case is for token {case.token!r}, the input for "
                         f"{agent_input.token!r}")
    return case


def reference_poses(case: ScoringCase) -> np.ndarray:
    """(8, 3) ego-frame poses of the case's PDM-Closed reference at 0.5 .. 4.0 s."""
    local = to_ego_frame(case.ego.rear_axle, case.pdm_reference)
    try:
        return resample(local, case.pdm_reference_interval_s, OUTPUT_TIMES_S)
    except ValueError as exc:
        raise ValueError(f"{case.token}: PDM-Closed reference: {exc}") from None


def reference_trajectory(case: ScoringCase) -> Trajectory:
    return Trajectory(reference_poses(case))


class PDMClosedAgent(Agent):
    name = "pdm_closed"
    requires_privileged = True

    def sensor_config(self) -> SensorConfig:
        return SensorConfig(history_frames=1)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return reference_trajectory(scoring_case(agent_input, self.name))
