"""Smoothness over the merged records: load each record's own metric log, judge its chunks, average."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .comfort import route_smoothness_many, undefined_reason
from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .errors import Bench2DriveInputError, MetricUndefined
from .metric_logs import MetricLog, load_metric_log, metric_log_path
from .numeric import mean
from .records import RouteRecord

_TOOL = "efficiency_smoothness_benchmark.py"


@dataclass(frozen=True)
class SmoothnessResult:
    value: float | None  # fraction in [0, 1]; the README's "Comfortness" is 100x this
    per_record: tuple[float | None, ...]  # merged order
    n_steps: tuple[int | None, ...]  # merged order; None where the log could not be read
    errors: tuple[MetricUndefined, ...]


def load_logs(records: Sequence[RouteRecord], metric_dir: str | Path
              ) -> tuple[list[MetricLog | None], list[MetricUndefined]]:
    logs: list[MetricLog | None] = []
    errors: list[MetricUndefined] = []
    for rec in records:
        path = metric_log_path(metric_dir, rec.save_name)
        try:
            logs.append(load_metric_log(path))
        except Bench2DriveInputError as exc:
            logs.append(None)
            official = ("FileNotFoundError" if not path.exists() else "crash while reading the log")
            errors.append(MetricUndefined("smoothness", f"{rec.route_id}: {exc}", f"{_TOOL}: {official}"))
    return logs, errors


def compute_smoothness(records: Sequence[RouteRecord], metric_dir: str | Path | None,
                       config: Bench2DriveConfig = DEFAULT_CONFIG) -> SmoothnessResult:
    if metric_dir is None:
        err = MetricUndefined("smoothness", "no metric folder given (SAVE_PATH with <save_name>/metric_info.json)",
                              f"{_TOOL} requires -m METRIC_DIR")
        return SmoothnessResult(None, tuple(None for _ in records), tuple(None for _ in records), (err,))
    if not Path(metric_dir).is_dir():
        raise Bench2DriveInputError(metric_dir, None, "metric folder not found")
    logs, errors = load_logs(records, metric_dir)
    for log in logs:
        reason = undefined_reason(log, config)
        if reason is not None:
            errors.append(reason)
    per = route_smoothness_many(logs, config)
    value = None if errors or not per else mean(per)  # type: ignore[arg-type]
    if not per:
        errors.append(MetricUndefined("smoothness", "no record", f"{_TOOL}: ZeroDivisionError"))
    return SmoothnessResult(value, tuple(per), tuple(None if l is None else l.n_steps for l in logs), tuple(errors))
