"""Two-stage (navhard-style) pseudo-closed-loop aggregation and the one-stage EPDMS.

For each agent (proposal k of every frame) and mapping ((now, prev), second-stage pairs), as NAVSIM's
``SceneAggregator`` and ``run_pdm_score`` do:
* EC for (now, prev) and every second-stage pair, written to both tokens (a token in several pairs keeps the
  last write, like ``DataFrame.update``);
* weights: 1 for first-stage tokens, a Gaussian of the distance between the first-stage agent endpoint and the
  second-stage start points, normalised per side (uniform when the sum is ~0);
* row score = product x (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16;
* mapping value of every column = (now x weighted stage two (now) + prev x weighted stage two (prev)) / 2;
* the dataset EPDMS is the mean over mappings; stage summaries are means over the 2M stage rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from evaluators.epdms.config import EPDMSConfig
from evaluators.epdms.metrics.comfort import extended_comfort
from evaluators.epdms.score import SUB_METRICS, WEIGHTED
from irlvla_bench.types import StageMapping

SUMMARY_COLUMNS = SUB_METRICS + ("two_frame_extended_comfort", "score")
# EC only uses rear-axle acceleration magnitudes and headings, so the centre offset never enters it.
_EC_REAR_AXLE_TO_CENTER = 0.0


@dataclass(frozen=True)
class TokenRow:
    """What aggregation needs of one scored token for one agent."""

    metrics: Mapping[str, float]  # SUB_METRICS after the human filter
    multiplicative: float
    simulated_states: np.ndarray  # (41, 11)
    start_time_us: int
    endpoint: np.ndarray  # (2,) agent's last pose, global
    start_point: np.ndarray  # (2,) ego rear axle at t = 0


@dataclass(frozen=True)
class MappingScore:
    now: str
    prev: str
    columns: dict[str, float]  # every SUMMARY_COLUMNS entry
    stage_one: dict[str, float]
    stage_two: dict[str, float]
    # (now, prev) first-stage rows and (now, prev) weighted second-stage rows the stage summaries average.
    stage_rows: tuple[dict[str, float], ...] = ()

    def score_record(self) -> dict:
        """The mapping's EPDMS ``score`` and its stage means, as ``summary.json`` ``mapping_scores`` lists them."""
        return {"now": self.now, "prev": self.prev, "score": float(self.columns["score"]),
                "stage_one_score": float(self.stage_one["score"]), "stage_two_score": float(self.stage_two["score"])}


@dataclass(frozen=True)
class AgentAggregate:
    token_columns: dict[str, dict[str, float]]  # token -> two_frame_extended_comfort, weight, score
    mappings: list[MappingScore]
    summary: dict[str, dict[str, float]]


def _extended_comfort(rows: Mapping[str, TokenRow], now: str, prev: str, cfg: EPDMSConfig) -> float:
    current, previous = rows[now], rows[prev]
    offset_s = current.start_time_us * 1e-6 - previous.start_time_us * 1e-6
    if not 0.0 < offset_s < cfg.max_prev_frame_offset_s:
        raise ValueError(f"frame {prev!r} must start 0 < dt < {cfg.max_prev_frame_offset_s} s before {now!r}")
    overlap = round(offset_s / cfg.interval_s)
    return float(
        extended_comfort(current.simulated_states[None], previous.simulated_states[None], cfg.interval_s, overlap,
                         _EC_REAR_AXLE_TO_CENTER, cfg.comfort, cfg.extended_comfort)[0]
    )


def _gaussian_weights(anchor: np.ndarray, starts: np.ndarray, cfg: EPDMSConfig) -> np.ndarray:
    squared = (anchor[0] - starts[:, 0]) ** 2 + (anchor[1] - starts[:, 1]) ** 2
    weights = np.exp(-squared / (2 * cfg.gaussian_sigma_squared))
    total = weights.sum()
    if np.isclose(total, 0.0, atol=cfg.weight_sum_zero_atol) or np.isnan(total):
        return np.full(len(starts), 1.0 / len(starts))
    return weights / total


def _row_score(row: TokenRow, ec: float, cfg: EPDMSConfig) -> float:
    values = np.array([row.metrics[n] for n in WEIGHTED] + [ec])
    weights = np.asarray(cfg.weighted_metrics_array)
    return float(row.multiplicative * (values * weights).sum() / weights.sum())


def _weighted_average(tokens: Sequence[str], table: Mapping[str, dict[str, float]],
                      columns: Sequence[str] = SUMMARY_COLUMNS) -> dict[str, float]:
    if not tokens:
        return {c: float("nan") for c in columns}
    weights = np.array([table[t]["weight"] for t in tokens])
    total = weights.sum()
    if total == 0:
        return {c: float("nan") for c in columns}
    return {c: float((np.array([table[t][c] for t in tokens]) * weights).sum() / total) for c in columns}


def mapping_score(mapping: StageMapping, table: Mapping[str, dict[str, float]],
                  columns: Sequence[str] = SUMMARY_COLUMNS) -> MappingScore:
    """One mapping's columns from the final per-token table (each token's ``weight`` and the ``columns``):
    stage one is the first-stage token, stage two the weighted average of its second-stage tokens, per side,
    and the mapping value is (now x weighted stage two (now) + prev x weighted stage two (prev)) / 2."""
    s1_now = _weighted_average([mapping.now], table, columns)
    s2_now = _weighted_average([p[0] for p in mapping.second_stage], table, columns)
    s1_prev = _weighted_average([mapping.prev], table, columns)
    s2_prev = _weighted_average([p[1] for p in mapping.second_stage], table, columns)
    return MappingScore(
        now=mapping.now,
        prev=mapping.prev,
        columns={c: (s1_now[c] * s2_now[c] + s1_prev[c] * s2_prev[c]) / 2 for c in columns},
        stage_one={c: (s1_now[c] + s1_prev[c]) / 2 for c in columns},
        stage_two={c: (s2_now[c] + s2_prev[c]) / 2 for c in columns},
        stage_rows=(s1_now, s1_prev, s2_now, s2_prev),
    )


def aggregate_agent(rows: Mapping[str, TokenRow], mappings: Sequence[StageMapping],
                    cfg: EPDMSConfig) -> AgentAggregate:
    updates: dict[str, dict[str, float]] = {}
    for mapping in mappings:
        ec = _extended_comfort(rows, mapping.now, mapping.prev, cfg)
        updates[mapping.now] = {"two_frame_extended_comfort": ec, "weight": 1.0}
        updates[mapping.prev] = {"two_frame_extended_comfort": ec, "weight": 1.0}
        now_tokens = [pair[0] for pair in mapping.second_stage]
        prev_tokens = [pair[1] for pair in mapping.second_stage]
        weight_map: dict[str, float] = {}
        for anchor, tokens in ((mapping.now, now_tokens), (mapping.prev, prev_tokens)):
            if tokens:
                starts = np.array([rows[t].start_point for t in tokens])
                weight_map.update(zip(tokens, _gaussian_weights(rows[anchor].endpoint, starts, cfg)))
        for now_token, prev_token in mapping.second_stage:
            ec = _extended_comfort(rows, now_token, prev_token, cfg)
            updates[now_token] = {"two_frame_extended_comfort": ec, "weight": float(weight_map[now_token])}
            updates[prev_token] = {"two_frame_extended_comfort": ec, "weight": float(weight_map[prev_token])}

    missing = sorted(set(rows) - set(updates))
    if missing:
        raise ValueError(f"tokens not referenced by any mapping cannot be aggregated: {', '.join(missing)}")

    table: dict[str, dict[str, float]] = {}
    for token, update in updates.items():
        row = rows[token]
        entry = {name: float(row.metrics[name]) for name in SUB_METRICS}
        entry.update(update)
        entry["score"] = _row_score(row, update["two_frame_extended_comfort"], cfg)
        table[token] = entry

    mapping_scores = [mapping_score(mapping, table) for mapping in mappings]
    stage_one_rows = [row for m in mapping_scores for row in m.stage_rows[:2]]
    stage_two_rows = [row for m in mapping_scores for row in m.stage_rows[2:]]
    summary = {
        # pandas' mean skips NaN (an empty second stage), as NAVSIM's DataFrame(...).mean() does.
        "extended_pdm_score_combined": dict(pd.DataFrame([m.columns for m in mapping_scores]).mean()),
        "extended_pdm_score_stage_one": dict(pd.DataFrame(stage_one_rows).mean()),
        "extended_pdm_score_stage_two": dict(pd.DataFrame(stage_two_rows).mean()),
    }
    return AgentAggregate(token_columns=table, mappings=mapping_scores, summary=summary)


def one_stage_summary(score_single_frame: np.ndarray, metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
    """navtest-style EPDMS of single frames: means of the per-frame sub-metrics and single-frame scores."""
    summary = {name: float(np.mean(values)) for name, values in metrics.items()}
    summary["score"] = float(np.mean(score_single_frame))
    return summary
