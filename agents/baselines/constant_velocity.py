"""NAVSIM's ``ConstantVelocityAgent``: drive straight ahead at the current speed.

Pose k (k = 1..8) is ``(k * 0.5 s * |v|, 0, 0)`` with ``|v|`` the norm of the current ego velocity; the
heading is never changed, so on a curve the agent leaves the lane (that is the baseline's point). NAVSIM
returns these poses as float32; we round the same way so that scores match NAVSIM's bit for bit.
"""

from __future__ import annotations

import numpy as np

from agents.base import NUM_POSES, POSE_INTERVAL_S, Agent, AgentInput, SensorConfig, Trajectory


class ConstantVelocityAgent(Agent):
    name = "constant_velocity"

    def sensor_config(self) -> SensorConfig:
        # The current ego status is all it reads; asking for more history would be a contract violation.
        return SensorConfig(history_frames=1)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        # NAVSIM's ego velocity is float32, and so is the norm it takes of it.
        velocity = np.asarray(agent_input.current.velocity, dtype=np.float32)
        speed = float(np.sqrt((velocity ** 2).sum(-1)))
        poses = np.zeros((NUM_POSES, 3), dtype=np.float32)
        poses[:, 0] = np.arange(1, NUM_POSES + 1) * POSE_INTERVAL_S * speed
        return Trajectory(poses.astype(np.float64))
