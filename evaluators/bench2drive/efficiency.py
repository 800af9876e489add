"""Driving Efficiency (efficiency_smoothness_benchmark.py): ego speed as % of the surrounding traffic's.

The percentage is read back from the min-speed infraction *messages* with the tool's regex, so its quirks are
part of the metric: ``"2.5e+16%"`` reads as 16, a negative value loses its sign, values above 1000 are dropped
(1000 itself is kept), each record's values are averaged first, and records without any message (e.g. a Perfect
route) are left out of the mean.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .errors import MetricUndefined
from .numeric import mean
from .records import RouteRecord

_TOOL = "efficiency_smoothness_benchmark.py"
# The value the StatisticsManager formatted into the message: f"Average speed is {v}% of the surrounding ..."
_WRITTEN = re.compile(r"Average speed is (\S+?)% ")


@dataclass(frozen=True)
class MinSpeedValue:
    message: str
    parsed: float | None  # what the tool's regex reads (None: no match, the tool crashes)
    written: float | None  # the number actually formatted into the message, when recognisable
    kept: bool  # parsed and not above the cap


@lru_cache(maxsize=4)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def parse_min_speed(messages: Sequence[str], config: Bench2DriveConfig = DEFAULT_CONFIG) -> tuple[MinSpeedValue, ...]:
    rx = _regex(config.efficiency_regex)
    out = []
    for msg in messages:
        m = rx.search(msg)
        parsed = None if m is None else float(m.group().rstrip("%"))
        w = _WRITTEN.search(msg)
        try:
            written = None if w is None else float(w.group(1))
        except ValueError:
            written = None
        out.append(MinSpeedValue(msg, parsed, written,
                                 parsed is not None and not parsed > config.efficiency_max_percent))
    return tuple(out)


@dataclass(frozen=True)
class RecordEfficiency:
    route_id: str
    values: tuple[MinSpeedValue, ...]
    value: float | None  # mean of kept values; None when the record has no message (excluded) or is undefined
    error: MetricUndefined | None


def record_efficiency(record: RouteRecord, config: Bench2DriveConfig = DEFAULT_CONFIG) -> RecordEfficiency:
    values = parse_min_speed(record.infractions.get("min_speed_infractions", ()), config)
    if not values:
        return RecordEfficiency(record.route_id, values, None, None)
    bad = [v.message for v in values if v.parsed is None]
    if bad:
        return RecordEfficiency(record.route_id, values, None, MetricUndefined(
            "efficiency", f"{record.route_id}: no percentage in min-speed message {bad[0]!r}",
            f"{_TOOL}: AttributeError: 'NoneType' object has no attribute 'group'"))
    kept = [v.parsed for v in values if v.kept]
    if not kept:
        return RecordEfficiency(record.route_id, values, None, MetricUndefined(
            "efficiency", f"{record.route_id}: every min-speed percentage is above "
                          f"{config.efficiency_max_percent:g} and is dropped, so the route has no value",
            f"{_TOOL}: ZeroDivisionError: division by zero"))
    return RecordEfficiency(record.route_id, values, mean(kept), None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class EfficiencyResult:
    value: float | None  # percent
    per_record: tuple[RecordEfficiency, ...]  # merged order
    errors: tuple[MetricUndefined, ...]


def compute_efficiency(merged_records: Sequence[RouteRecord],
                       config: Bench2DriveConfig = DEFAULT_CONFIG) -> EfficiencyResult:
    per = tuple(record_efficiency(r, config) for r in merged_records)
    errors = [p.error for p in per if p.error is not None]
    values = [p.value for p in per if p.value is not None]
    if not errors and not values:
        errors.append(MetricUndefined("efficiency", "no record has a min-speed message",
                                      f"{_TOOL}: ZeroDivisionError: division by zero"))
    value = None if errors else mean(values)  # type: ignore[arg-type]
    return EfficiencyResult(value, per, tuple(errors))
