"""The logged human driver (privileged): NAVSIM's ``HumanAgent`` replays the recorded future ego poses.

The poses come from the scoring case (``agent_input.privileged.human_future``, ego frame, 0.5 .. 4.0 s), which is
what the metric cache stores as the human trajectory.

Synthetic (second-stage) frames have no logged future: nobody drove them. NAVSIM's ``HumanAgent`` would read
frames that synthetic scenes do not contain. Here the agent falls back, by default, to the case's PDM-Closed
reference (``on_synthetic="pdm_closed"``), the privileged planner the scorer already uses as its reference, so a
"human" row on a navhard-style split is human on original frames and PDM-Closed on synthetic ones. With
``on_synthetic="error"`` it raises instead, for runs that must not mix the two.
"""

from __future__ import annotations

from agents.base import Agent, AgentInput, SensorConfig, Trajectory
from agents.baselines.pdm_closed import reference_trajectory, scoring_case

ON_SYNTHETIC = ("pdm_closed", "error")


class NoHumanFutureError(ValueError):
    """The frame has no logged human future and the agent was told not to fall back."""


class HumanAgent(Agent):
    name = "human"
    requires_privileged = True

    def __init__(self, on_synthetic: str = "pdm_closed"):
        if on_synthetic not in ON_SYNTHETIC:
            raise ValueError(f"on_synthetic must be one of {ON_SYNTHETIC}, got {on_synthetic!r}")
        self.on_synthetic = on_synthetic

    def sensor_config(self) -> SensorConfig:
        return SensorConfig(history_frames=1)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        case = scoring_case(agent_input, self.name)
        if case.human_future is not None:
            return Trajectory(case.human_future)
        if self.on_synthetic == "error":
            raise NoHumanFutureError(f"{agent_input.token}: {case.scene_type} frame has no logged human future")
        return reference_trajectory(case)
