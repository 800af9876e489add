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


def _pool(group_ids: tuple[str, ...], mappings: tuple[StageMapping, ...], frame_parts: Sequence[dict[str, FrameScores]],
          sources: Sequence[str], config: EPDMSConfig) -> GroupScores:
    frames: dict[str, FrameScores] = {}
    owner: dict[str, str] = {}
    for part, source in zip(frame_parts, sources):
        for token, scores in part.items():
            if token in frames:
                raise ValueError(f"token {token!r} appears in both {owner[token]} and {source}")
            frames[token] = scores
            owner[token] = source
    counts = {len(scores) for scores in frames.values()}
    if len(counts) > 1:
        raise ValueError(f"groups scored together must have the same number of agents, got {sorted(counts)}")
    return GroupScores(group_ids=group_ids, mappings=mappings, frames=frames,
                       agents=aggregate_frames(frames, mappings, config))


def score_groups(groups: Sequence[SceneGroup], *, traffic="log_replay", mode: str = "submission",
                 config: EPDMSConfig = NAVSIM_V2, progress=None) -> GroupScores:
    """Score one or several groups together (their mappings are pooled, as for a whole split)."""
    parts = []
    for group in groups:
        part = {}
        for token, case in group.frames.items():
            part[token] = score_frame(case, traffic=traffic, mode=mode, config=config)
            if progress is not None:
                progress()
        parts.append(part)
    return _pool(tuple(g.group_id for g in groups), tuple(m for g in groups for m in g.mappings), parts,
                 [g.source for g in groups], config)


def pool_groups(parts: Sequence[GroupScores], config: EPDMSConfig = NAVSIM_V2) -> GroupScores:
    """The dataset-level result of groups already scored: their frames and mappings aggregated together."""
    return _pool(tuple(g for p in parts for g in p.group_ids), tuple(m for p in parts for m in p.mappings),
                 [p.frames for p in parts], [", ".join(p.group_ids) for p in parts], config)
