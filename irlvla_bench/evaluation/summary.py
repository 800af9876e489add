"""Token records -> the per-token table and the split's EPDMS (``docs/evaluation-schema.md``).

Two-stage splits use NAVSIM's pseudo-closed-loop aggregation over every mapping of the split at once (the same
``aggregate_agent`` that ``score_groups`` runs, fed with the very same per-frame numbers); a mapping with a token
that failed or could not be cached is left out of it and listed. One-stage splits average the frames.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluators.epdms import NAVSIM_V2
from evaluators.epdms.aggregate import SUMMARY_COLUMNS, MappingScore, TokenRow, aggregate_agent, one_stage_summary
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.evaluation.plan import EvaluationPlan
from irlvla_bench.evaluation.records import FAILED, OK, TokenRecord
from irlvla_bench.types import StageMapping

SCHEMA = "irlvla-evaluation/v1"
ROW_COLUMNS = ("token", "log_name", "frame_type", "stage", "status", "error", *SUB_METRICS,
               "two_frame_extended_comfort", "multiplicative_metrics_prod", "score", "weight", "aggregated", "poses",
               "seconds_agent")
NAN = float("nan")


@dataclass
class Aggregation:
    rows: pd.DataFrame
    metrics: dict[str, float] | None  # None when nothing could be aggregated
    stage_one: dict[str, float] | None = None
    stage_two: dict[str, float] | None = None
    dropped_mappings: list[dict] = field(default_factory=list)
    num_mappings: int = 0
    # Per-mapping scores of the kept mappings (two-stage only): the units a paired bootstrap of the two-stage
    # EPDMS resamples, since the EPDMS is their mean.
    mappings: list[MappingScore] = field(default_factory=list)


def _mapping_tokens(mapping: StageMapping) -> list[str]:
    return list(dict.fromkeys([mapping.now, mapping.prev] + [t for pair in mapping.second_stage for t in pair]))


def _token_row(record: TokenRecord) -> TokenRow:
    s = record.scores
    return TokenRow(metrics=s.metrics, multiplicative=s.multiplicative, simulated_states=s.simulated_states,
                    start_time_us=s.start_time_us, endpoint=s.endpoint, start_point=s.start_point)


def _base_row(record: TokenRecord) -> dict:
    row = {"token": record.token, "log_name": record.log_name, "frame_type": record.frame_type,
           "stage": record.stage, "status": record.status, "error": record.error}
    scored = record.scores is not None
    for name in SUB_METRICS:
        row[name] = record.scores.metrics[name] if scored else NAN
    row["two_frame_extended_comfort"] = NAN
    row["multiplicative_metrics_prod"] = record.scores.multiplicative if scored else NAN
    row["score"] = NAN
    row["weight"] = NAN
    row["aggregated"] = False
    row["poses"] = "" if record.poses is None else json.dumps(np.asarray(record.poses).tolist())
    row["seconds_agent"] = record.seconds_agent
    return row


def _table(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=list(ROW_COLUMNS))
    return table.astype({"aggregated": bool})


def aggregate_two_stage(records: list[TokenRecord], plan: EvaluationPlan) -> Aggregation:
    scored = {r.token: r for r in records if r.status == OK and r.scores is not None}
    listed = {r.token for r in records}
    kept, dropped = [], []
    for mapping in plan.mappings:
        tokens = _mapping_tokens(mapping)
        missing = [t for t in tokens if t not in listed]
        bad = [t for t in tokens if t in listed and t not in scored]
        if missing or bad:
            reason = "; ".join(filter(None, [f"failed: {', '.join(bad)}" if bad else "",
                                             f"not in the split's scenes: {', '.join(missing)}" if missing else ""]))
            dropped.append({"now": mapping.now, "prev": mapping.prev, "tokens": bad + missing, "reason": reason})
        else:
            kept.append(mapping)
    columns: dict[str, dict[str, float]] = {}
    agg = None
    if kept:
        used = list(dict.fromkeys(t for m in kept for t in _mapping_tokens(m)))
        agg = aggregate_agent({t: _token_row(scored[t]) for t in used}, kept, NAVSIM_V2)
        columns = agg.token_columns
    rows = []
    for record in records:
        row = _base_row(record)
        if record.token in columns:
            entry = columns[record.token]
            row.update(two_frame_extended_comfort=entry["two_frame_extended_comfort"], score=entry["score"],
                       weight=entry["weight"], aggregated=True)
        rows.append(row)
    if agg is None:
        return Aggregation(_table(rows), None, dropped_mappings=dropped, num_mappings=0)
    summary = agg.summary
    return Aggregation(_table(rows), summary["extended_pdm_score_combined"], summary["extended_pdm_score_stage_one"],
                       summary["extended_pdm_score_stage_two"], dropped, len(kept), list(agg.mappings))


def aggregate_one_stage(records: list[TokenRecord]) -> Aggregation:
    rows, scored = [], []
    for record in records:
        row = _base_row(record)
        if record.scores is not None:
            row.update(score=record.scores.score_single_frame, weight=1.0, aggregated=True)
            scored.append(record.scores)
        rows.append(row)
    metrics = None
    if scored:
        metrics = one_stage_summary(np.array([s.score_single_frame for s in scored]),
                                    {n: np.array([s.metrics[n] for s in scored]) for n in SUB_METRICS})
        metrics["two_frame_extended_comfort"] = NAN  # no frame pairs in a one-stage split
        metrics = {c: metrics[c] for c in SUMMARY_COLUMNS}
    return Aggregation(_table(rows), metrics)


def aggregate(records: list[TokenRecord], plan: EvaluationPlan) -> Aggregation:
    return aggregate_two_stage(records, plan) if plan.spec.is_two_stage else aggregate_one_stage(records)


def failures(records: list[TokenRecord]) -> list[dict]:
    return [{"token": r.token, "log_name": r.log_name, "error": r.error, "traceback": r.traceback}
            for r in records if r.status == FAILED]


def json_safe(value):
    """NaN/inf -> null, numpy scalars -> Python: summary.json is strict JSON for every reader."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _metric_block(values: dict[str, float] | None) -> dict[str, float] | None:
    return None if values is None else {c: float(values[c]) for c in SUMMARY_COLUMNS}


def mapping_score_records(mappings: list[MappingScore]) -> list[dict]:
    """``summary.json`` ``mapping_scores``: the EPDMS ``score`` of each aggregated mapping and its stage means."""
    return [m.score_record() for m in mappings]


def build_summary(*, plan: EvaluationPlan, aggregation: Aggregation, records: list[TokenRecord], traffic: str,
                  agent: dict, seed: int, config_hash: str, data_root: str, source: dict, created_utc: str) -> dict:
    from evaluators.epdms import SCORER_VERSION
    from irlvla_bench.evaluation.provenance import git_state, package_versions

    commit, dirty = git_state()
    failed = failures(records)
    metrics = _metric_block(aggregation.metrics)
    two = plan.spec.is_two_stage
    summary = {
        "schema": SCHEMA,
        "scorer_version": SCORER_VERSION,
        "split": plan.spec.name,
        "aggregation": plan.aggregation,
        "traffic": traffic,
        "agent": agent,
        "source": source,
        "seed": seed,
        "config_hash": config_hash,
        "git_commit": commit,
        "git_dirty": dirty,
        "versions": package_versions(),
        "data_root": data_root,
        "cache_dir": str(plan.cache_dir.absolute()),
        "created_utc": created_utc,
        "num_tokens": len(records),
        "num_failed": len(failed),
        "failed": failed,
        "num_mappings": aggregation.num_mappings if two else None,
        "dropped_mappings": aggregation.dropped_mappings if two else [],
        "mapping_scores": mapping_score_records(aggregation.mappings) if two else [],
        "input_problems": [{"input": a, "reason": b} for a, b in plan.input_problems],
        "metrics": metrics,
        "stage_one": _metric_block(aggregation.stage_one) if two else None,
        "stage_two": _metric_block(aggregation.stage_two) if two else None,
        "epdms": None if metrics is None else metrics["score"],
    }
    return json_safe(summary)
