"""Where a token's trajectory comes from: a live agent, or the predictions of a submission pickle. Both sides of
the runner (single process and Ray actors) build their planner from a small picklable *source*."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from agents.base import Agent, Trajectory, TrajectoryError, make_agent, parse_agent_spec
from irlvla_bench.evaluation.plan import TokenJob
from irlvla_bench.types import ScoringCase


def token_seed(seed: int, token: str) -> int:
    """The seed an agent gets before each token: a function of (run seed, token) only, so that a token's output
    does not depend on which tokens came before it (resume, sharding over workers)."""
    digest = hashlib.sha256(f"{seed}:{token}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def as_poses(output) -> np.ndarray:
    if not isinstance(output, Trajectory):
        raise TrajectoryError(f"compute_trajectory must return agents.base.Trajectory, got {type(output).__name__}")
    return np.array(output.poses, dtype=np.float64)


class AgentPlanner:
    def __init__(self, agent: Agent, seed: int):
        self.agent = agent
        self.seed = seed
        self.sensors = agent.sensor_config()
        self.agent.initialize()

    @property
    def requires_privileged(self) -> bool:
        return bool(self.agent.requires_privileged)

    def ready(self) -> "AgentPlanner":
        return self

    def plan(self, job: TokenJob, case: ScoringCase | None) -> np.ndarray:
        from agents.inputs import build_agent_input
        from irlvla_bench.caching.scene import load_scene

        scene = load_scene(job.ref)
        # Only privileged agents (human, PDM-Closed) see the scoring case; sensor agents never do.
        privileged = case if self.requires_privileged else None
        agent_input = build_agent_input(scene, self.sensors, job.sensor_root, privileged=privileged)
        self.agent.seed(token_seed(self.seed, job.token))
        return as_poses(self.agent.compute_trajectory(agent_input))


class MissingPredictionError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class LookupPlanner:
    requires_privileged = False

    def __init__(self, predictions: Mapping[str, np.ndarray]):
        self.predictions = predictions

    def ready(self) -> "LookupPlanner":
        return self

    def plan(self, job: TokenJob, case: ScoringCase | None) -> np.ndarray:
        if job.token not in self.predictions:
            raise MissingPredictionError(f"token {job.token} has no prediction in the submission")
        return as_poses(Trajectory(np.asarray(self.predictions[job.token], dtype=np.float64)))


@dataclass(frozen=True)
class AgentSource:
    """``spec`` is ``NAME[:CHECKPOINT]`` or an ``Agent`` instance (copied to each Ray worker)."""

    spec: str | Agent
    seed: int = 0

    def build(self) -> AgentPlanner:
        agent = make_agent(self.spec) if isinstance(self.spec, str) else self.spec
        return AgentPlanner(agent, self.seed)

    @property
    def name(self) -> str:
        if isinstance(self.spec, str):
            return parse_agent_spec(self.spec)[0]
        return self.spec.name or type(self.spec).__name__

    @property
    def checkpoint(self) -> str | None:
        if isinstance(self.spec, str):
            return parse_agent_spec(self.spec)[1]
        return getattr(self.spec, "checkpoint", None)


@dataclass(frozen=True)
class LookupSource:
    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)

    def build(self) -> LookupPlanner:
        return LookupPlanner(self.predictions)


class LazyPlanner:
    """Builds the planner on first use: a resumed run whose remaining tokens only need scoring never loads the
    agent (or its weights). ``ready()`` is called outside the per-token error boundary, so an agent that cannot
    be built stops the run instead of failing every token."""

    def __init__(self, source):
        self._source = source
        self._planner = None

    def ready(self):
        if self._planner is None:
            self._planner = self._source.build()
        return self._planner


def agent_requires_privileged(spec: str | Agent) -> bool:
    """Whether an agent reads the scoring case, without loading weights when the factory is a class."""
    if isinstance(spec, Agent):
        return bool(spec.requires_privileged)
    import agents.registered  # noqa: F401  (fills the registry)
    from agents.base import AGENTS

    factory = AGENTS.factory(parse_agent_spec(spec)[0])
    if isinstance(factory, type):
        return bool(getattr(factory, "requires_privileged", False))
    return bool(make_agent(spec).requires_privileged)


def check_agent_name(spec: str | Agent) -> None:
    """Fail before any work for an unknown agent name (the error lists the closest registered names)."""
    if isinstance(spec, str):
        import agents.registered  # noqa: F401
        from agents.base import AGENTS

        AGENTS.factory(parse_agent_spec(spec)[0])
