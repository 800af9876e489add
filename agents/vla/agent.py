"""``irlvla_il``: the trained IL VLA policy as an agent (``make_agent("irlvla_il:CHECKPOINT")``).

The agent asks for its configured cameras of the current frame and 4 ego statuses, builds the model inputs with
the same function training used (``data.input_arrays``), and plans with the deterministic DDIM path. The output
is a function of (input, seed): the anchors' test-time noise comes from a generator seeded with the agent's seed
at every call. With ``command_backend="language"`` a local Hugging Face checkpoint chooses the commands (the head's
choice is the fallback for answers that do not parse); ``last_commands`` keeps what was used per input.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from agents.base import Agent, AgentInput, CheckpointRequiredError, SensorConfig, Trajectory
from agents.vla.commands import (PATH_COMMANDS, SPEED_COMMANDS, CommandChoice, LanguageCommandBackend,
                                 build_prompt)
from agents.vla.data import input_arrays, sensor_config
from agents.vla.train import load_model


class IRLVLAAgent(Agent):
    name = "irlvla_il"
    missing_checkpoint = ("irlvla_il needs a checkpoint: use 'irlvla_il:PATH' (train one with "
                          "`irlvla-bench train il --data ROOT --split navtrain --out DIR`)")

    def __init__(self, checkpoint: str | Path | None = None, *, device: str = "cpu", command_backend: str | None = None,
                 language_model: str | Path | None = None, batch_size: int = 16, seed: int = 0,
                 drivable_penalty: float | None = None, collision_penalty: float | None = None):
        if checkpoint is None:
            raise CheckpointRequiredError(self.missing_checkpoint)
        self.checkpoint = Path(checkpoint)
        # Loaded now: a wrong path fails before the first frame, not in the middle of a split.
        self.model, payload = self.load(self.checkpoint, device)
        # Test-time re-ranking weights (PlannerConfig) may be changed without retraining.
        changes = {k: float(v) for k, v in (("drivable_penalty", drivable_penalty),
                                            ("collision_penalty", collision_penalty)) if v is not None}
        if changes:
            self.model.planner.cfg = replace(self.model.planner.cfg, **changes)
        self.config = self.model.config
        self.device = torch.device(device)
        self.batch_size = max(1, int(batch_size))
        self._seed = int(seed)
        backend = command_backend or self.config.command.backend
        if backend not in ("head", "language"):
            raise ValueError(f"command_backend must be 'head' or 'language', got {backend!r}")
        if backend == "language" and language_model is None:
            raise ValueError("the language command backend needs language_model=PATH (a local HF checkpoint)")
        self.language = LanguageCommandBackend(language_model, device=device) if backend == "language" else None
        self.meta = payload.get("meta") or {}
        self.last_commands: list[CommandChoice] = []

    @staticmethod
    def load(checkpoint: Path, device: str) -> tuple:
        """(model in eval mode on ``device``, checkpoint payload)."""
        return load_model(checkpoint, device)

    def sensor_config(self) -> SensorConfig:
        return sensor_config(self.config)

    def seed(self, seed: int) -> None:
        self._seed = int(seed)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return self.compute_trajectories([agent_input])[0]

    def compute_trajectories(self, agent_inputs: Sequence[AgentInput]) -> list[Trajectory]:
        out: list[Trajectory] = []
        self.last_commands = []
        for start in range(0, len(agent_inputs), self.batch_size):
            out.extend(self._batch(agent_inputs[start:start + self.batch_size]))
        return out

    @torch.no_grad()
    def _batch(self, inputs: Sequence[AgentInput]) -> list[Trajectory]:
        arrays = [input_arrays(x, self.config) for x in inputs]
        batch = {k: torch.as_tensor(np.stack([a[k] for a in arrays])).to(self.device) for k in arrays[0]}
        features = self.model.scene_features(batch)
        speed = features.speed_logits.argmax(-1).tolist()
        path = features.path_logits.argmax(-1).tolist()
        choices = [CommandChoice(s, p, "head") for s, p in zip(speed, path)]
        if self.language is not None:
            choices = [self._ask(x, c) for x, c in zip(inputs, choices)]
            # Language answers become one-hot commands; a fallback row keeps the head's own beliefs, so its plan is
            # exactly the head backend's (condition() adds nothing where the distribution is unchanged).
            from_language = torch.tensor([c.source == "language" for c in choices], device=self.device)[:, None]
            speed_hot = torch.nn.functional.one_hot(torch.tensor([c.speed for c in choices]), len(SPEED_COMMANDS))
            path_hot = torch.nn.functional.one_hot(torch.tensor([c.path for c in choices]), len(PATH_COMMANDS))
            commands = (
                torch.where(from_language, speed_hot.float().to(self.device), features.speed_logits.softmax(-1)),
                torch.where(from_language, path_hot.float().to(self.device), features.path_logits.softmax(-1)))
            features = self.model.condition(features, commands)
        self.last_commands.extend(choices)
        generator = torch.Generator().manual_seed(self._seed)
        plan = self.model.planner.plan(features, generator, seg_logits=features.seg_logits)
        poses = plan.trajectory.double().cpu().numpy()
        return [Trajectory(p) for p in poses]

    def _ask(self, agent_input: AgentInput, head: CommandChoice) -> CommandChoice:
        status = agent_input.current
        prompt = build_prompt(float(np.hypot(*status.velocity[:2])), float(status.acceleration[0]),
                              np.asarray(status.driving_command))
        front = self.config.image.cameras[0]
        image = agent_input.cameras[-1][front].image if front in agent_input.cameras[-1] else None
        return self.language.choose(prompt, (head.speed, head.path), image)
