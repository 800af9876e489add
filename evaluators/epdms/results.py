"""Result documents in the field names and nesting of NAVSIM's golden results (``shared/golden/epdms``).

``pdm_score`` is NAVSIM's own value, which the scorer computes *before* the human filter and never updates
(so it can disagree with the filtered sub-metrics); ``score_single_frame`` is the consistent score after the
filter. Both are written so that users can compare with either.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from evaluators.epdms.config import NAVSIM_V2, SCORER_VERSION
from evaluators.epdms.groups import GroupScores
from evaluators.epdms.metrics.areas import MULTIPLE_LANES, NON_DRIVABLE, ONCOMING
from evaluators.epdms.score import MULTIPLICATIVE, SUB_METRICS, WEIGHTED, FrameScores

CASE_SCHEMA = "irlvla-epdms-result/v1"
GROUP_SCHEMA = "irlvla-epdms-group-result/v1"
_SHORT = {"no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC",
          "driving_direction_compliance": "DDC", "traffic_light_compliance": "TLC"}


def _time_or_none(step: float) -> float | None:
    return None if math.isinf(step) else float(step) * NAVSIM_V2.interval_s


def _metric_block(values: dict[str, float], multiplicative: float, pdm_score: float) -> dict[str, Any]:
    block = {name: float(values[name]) for name in SUB_METRICS}
    block["multiplicative_metrics_prod"] = float(multiplicative)
    block["weighted_metrics"] = [float(values[n]) for n in WEIGHTED] + [0.0]
    block["weighted_metrics_array"] = list(NAVSIM_V2.weighted_metrics_array)
    block["pdm_score"] = float(pdm_score)
    return block


def proposal_entry(scores: FrameScores, row: int, *, diagnostics: bool) -> dict[str, Any]:
    case = scores.case
    index = int(scores.proposal_index[row])
    metrics = {name: float(scores.metrics[name][row]) for name in SUB_METRICS}
    entry = {"id": case.proposals.ids[index]}
    if case.proposals.labels and case.proposals.labels[index]:
        entry["label"] = case.proposals.labels[index]
    entry.update(_metric_block(metrics, scores.multiplicative[row], scores.pdm_score[row]))
    entry["weighted_part_single_frame"] = float(scores.weighted_part[row])
    entry["score_single_frame"] = float(scores.score_single_frame[row])
    entry["simulated_states"] = scores.simulated_states[row].tolist()
    entry["endpoint_xy"] = scores.endpoints[row].tolist()
    entry["human_filter_overrides"] = list(scores.overrides[row])
    if diagnostics:
        unfiltered = {name: float(scores.unfiltered[name][row]) for name in SUB_METRICS}
        unfiltered_product = float(np.prod([unfiltered[n] for n in MULTIPLICATIVE]))
        diag: dict[str, Any] = {
            "unfiltered": _metric_block(unfiltered, unfiltered_product, scores.pdm_score[row]),
            "progress_raw_m": {"pdm_reference": float(scores.reference_progress_m[row]),
                               "proposal": float(scores.progress_m[row])},
            "pdm_reference_multiplicative": float(scores.reference_multiplicative[row]),
            "progress_normalizer_m": float(scores.normalizer_m[row]),
            "pdm_reference_metrics": {_SHORT[n]: float(scores.reference_metrics[n][row]) for n in MULTIPLICATIVE},
            "ego_areas_proposal": {
                "multiple_lanes": scores.flags[row, :, MULTIPLE_LANES].astype(int).tolist(),
                "non_drivable_area": scores.flags[row, :, NON_DRIVABLE].astype(int).tolist(),
                "oncoming_traffic": scores.flags[row, :, ONCOMING].astype(int).tolist(),
            },
            "collision_time_s": _time_or_none(scores.collision_step[row]),
            "ttc_time_s": _time_or_none(scores.ttc_step[row]),
        }
        if scores.human is not None:
            human = {name: float(scores.human[name][row]) for name in SUB_METRICS}
            product = float(np.prod([human[n] for n in MULTIPLICATIVE]))
            weights = np.asarray(NAVSIM_V2.single_frame_weights)
            part = float((np.array([human[n] for n in WEIGHTED]) * weights).sum() / weights.sum())
            diag["human"] = _metric_block(human, product, product * part)
            diag["human_simulated_states"] = scores.human_states.tolist()
        entry["diagnostics"] = diag
    return entry


def case_document(scores: FrameScores, policy: str, *, diagnostics: bool = False) -> dict[str, Any]:
    case = scores.case
    return {
        "schema": CASE_SCHEMA,
        "scorer_version": SCORER_VERSION,
        "case_id": case.case_id,
        "token": case.token,
        "policy": policy,
        "scene_type": case.scene_type,
        "proposals": [proposal_entry(scores, r, diagnostics=diagnostics) for r in range(len(scores))],
    }


def group_document(result: GroupScores, policy: str) -> dict[str, Any]:
    agents = []
    for k, aggregate in enumerate(result.agents):
        tokens = {}
        for token, scores in result.frames.items():
            case = scores.case
            metrics = {name: float(scores.metrics[name][k]) for name in SUB_METRICS}
            entry = {"proposal_id": case.proposals.ids[int(scores.proposal_index[k])]}
            entry.update(_metric_block(metrics, scores.multiplicative[k], scores.pdm_score[k]))
            entry.update(aggregate.token_columns[token])
            entry["frame_type"] = case.scene_type
            entry["start_time_s"] = case.time_us * 1e-6
            entry["endpoint_xy"] = scores.endpoints[k].tolist()
            entry["start_point_xy"] = case.ego.rear_axle[:2].tolist()
            entry["simulated_states"] = scores.simulated_states[k].tolist()
            tokens[token] = entry
        agents.append(
            {
                "agent_index": k,
                "proposal_ids": sorted({t["proposal_id"] for t in tokens.values()}),
                "tokens": tokens,
                "groups": [
                    {"now": m.now, "prev": m.prev, "score": m.columns["score"],
                     "stage_one_score": m.stage_one["score"], "stage_two_score": m.stage_two["score"]}
                    for m in aggregate.mappings
                ],
                "summary": {name: {k2: float(v) for k2, v in block.items()} for name, block in aggregate.summary.items()},
            }
        )
    return {
        "schema": GROUP_SCHEMA,
        "scorer_version": SCORER_VERSION,
        "group_ids": list(result.group_ids),
        "policy": policy,
        "mappings": [{"now": m.now, "prev": m.prev, "second_stage": [list(p) for p in m.second_stage]}
                     for m in result.mappings],
        "agents": agents,
    }
