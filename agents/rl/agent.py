"""The PPO-fine-tuned IRL-VLA policy as an agent: ``irlvla_rl:<run>/policy.pt``.

Runs the same deterministic planner as the IL policy (DDIM eta = 0 from the seeded noisy anchors, argmax of the
confidences) with the fine-tuned weights. It also loads an IL checkpoint (``agents.vla.train`` format), so the IL
start and its RL fine-tune can be evaluated through one code path: any difference between them is the weights.

Seeding: every call draws the anchor noise from a generator seeded with the agent's seed (the runner seeds per
token), and every sample of a batch gets the noise it would get alone, so batched and one-by-one outputs agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from agents.base import Agent, AgentInput, CheckpointRequiredError, SensorConfig, Trajectory


class IRLVLARLAgent(Agent):
    name = "irlvla_rl"

    def __init__(self, checkpoint: str | Path | None = None, batch_size: int = 16):
        if checkpoint is None:
            raise CheckpointRequiredError("irlvla_rl needs a checkpoint: use 'irlvla_rl:PATH' (train one with "
                                          "`irlvla-bench train rl --il CKPT --rwm CKPT --data ROOT --out DIR`, "
                                          "then PATH = DIR/policy.pt)")
        from agents.rl.world import load_policy_model

        self.checkpoint = Path(checkpoint)
        # Load now: a wrong path or file should fail before the first frame, not in the middle of a split.
        self._model, self.payload = load_policy_model(self.checkpoint)
        self.batch_size = int(batch_size)
        self._seed = 0

    def sensor_config(self) -> SensorConfig:
        from agents.vla.data import sensor_config

        return sensor_config(self._model.config)

    def seed(self, seed: int) -> None:
        self._seed = int(seed)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return self.compute_trajectories([agent_input])[0]

    def compute_trajectories(self, agent_inputs: Sequence[AgentInput]) -> list[Trajectory]:
        import torch

        from agents.vla.data import input_arrays
        from agents.vla.model import to_tensors

        out: list[Trajectory] = []
        for start in range(0, len(agent_inputs), self.batch_size):
            chunk = [input_arrays(x, self._model.config) for x in agent_inputs[start:start + self.batch_size]]
            batch = to_tensors({k: np.stack([a[k] for a in chunk]) for k in chunk[0]})
            with torch.no_grad():
                _, plan = self._model.plan(batch, generator=torch.Generator().manual_seed(self._seed))
            out.extend(Trajectory(p) for p in plan.trajectory.double().numpy())
        return out
