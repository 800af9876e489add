"""Driving Score and Success Rate (tools/merge_route_json.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .numeric import sequential_sum
from .records import RouteRecord


def is_success(record: RouteRecord, config: Bench2DriveConfig = DEFAULT_CONFIG) -> bool:
    """Finished (Completed/Perfect) with no infraction other than min-speed messages.

    Shared by merge and ability.  route_timeout, route_dev, vehicle_blocked and any outside-lanes message block
    success even on a Completed route.
    """
    if record.status not in config.success_statuses:
        return False
    return not any(msgs for key, msgs in record.infractions.items()
                   if key not in config.success_ignored_infractions)


@dataclass(frozen=True)
class MergeResult:
    driving_score: float  # percent: sum(score_composed) / divisor
    success_rate: float  # fraction: #success / divisor
    eval_num: int  # records counted, duplicates included
    n_success: int
    divisor: int
    success_route_ids: tuple[str, ...]  # in reading order (what the tool prints)
    records: tuple[RouteRecord, ...]  # merged order: route_id descending as strings, stable


def merge_records(records: Sequence[RouteRecord], config: Bench2DriveConfig = DEFAULT_CONFIG) -> MergeResult:
    """``records`` in file-then-record reading order; every record counts, duplicates too."""
    successes = [r.route_id for r in records if is_success(r, config)]
    # Python's sort is stable with reverse=True too: equal route ids keep their reading order.
    merged = tuple(sorted(records, key=lambda r: r.route_id, reverse=True))
    return MergeResult(
        driving_score=sequential_sum(r.score_composed for r in records) / config.route_divisor,
        success_rate=len(successes) / config.route_divisor,
        eval_num=len(records),
        n_success=len(successes),
        divisor=config.route_divisor,
        success_route_ids=tuple(successes),
        records=merged,
    )


def merged_json(result: MergeResult) -> dict[str, Any]:
    """The content merge_route_json.py writes to ``merged.json``."""
    return {
        "_checkpoint": {"records": [dict(r.raw) for r in result.records]},
        "driving score": result.driving_score,
        "success rate": result.success_rate,
        "eval num": result.eval_num,
    }
