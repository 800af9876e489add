"""Scoring scene groups: every frame once, then the two-stage aggregation per agent.

Several groups scored together give the dataset-level EPDMS (mappings of all groups, one mean), which is what
NAVSIM reports for a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from evaluators.epdms.aggregate import AgentAggregate, TokenRow, aggregate_agent
from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.score import SUB_METRICS, FrameScores, score_frame
from irlvla_bench.types import SceneGroup, StageMapping


@dataclass(frozen=True)
class GroupScores:
    group_ids: tuple[str, ...]
    mappings: tuple[StageMapping, ...]
    frames: dict[str, FrameScores]  # token -> scores of every proposal (agent k = proposal k)
    agents: list[AgentAggregate]

    @property
    def num_agents(self) -> int:
        return len(self.agents)


def token_row(scores: FrameScores, agent: int) -> TokenRow:
    case = scores.case
    return TokenRow(
        metrics={name: float(scores.metrics[name][agent]) for name in SUB_METRICS},
        multiplicative=float(scores.multiplicative[agent]),
        simulated_states=scores.simulated_states[agent],
        start_time_us=case.time_us,
        endpoint=scores.endpoints[agent],
        start_point=case.ego.rear_axle[:2],
    )


def aggregate_frames(frames: dict[str, FrameScores], mappings: Sequence[StageMapping],
                     config: EPDMSConfig) -> list[AgentAggregate]:
    num_agents = len(next(iter(frames.values())))
    return [
        aggregate_agent({token: token_row(s, agent) for token, s in frames.items()}, mappings, config)
        for agent in range(num_agents)
    ]


def score_groups(groups: Sequence[SceneGroup], *, traffic="log_replay", mode: str = "submission",
                 config: EPDMSConfig = NAVSIM_V2, progress=None) -> GroupScores:
    """Score one or several groups together (their mappings are pooled, as for a whole split)."""
    frames: dict[str, FrameScores] = {}
    owner: dict[str, str] = {}
    counts = set()
    for group in groups:
        for token, case in group.frames.items():
            if token in frames:
                raise ValueError(f"token {token!r} appears in both {owner[token]} and {group.source}")
            frames[token] = score_frame(case, traffic=traffic, mode=mode, config=config)
            owner[token] = group.source
            counts.add(len(case.proposals))
            if progress is not None:
                progress()
    if len(counts) > 1:
        raise ValueError(f"groups scored together must have the same number of agents, got {sorted(counts)}")
    mappings = tuple(m for g in groups for m in g.mappings)
    return GroupScores(
        group_ids=tuple(g.group_id for g in groups),
        mappings=mappings,
        frames=frames,
        agents=aggregate_frames(frames, mappings, config),
    )
