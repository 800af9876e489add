"""Errors raised by the Bench2Drive evaluator.

Two kinds of failure exist and they are kept apart on purpose:

* the input itself is broken (unreadable JSON, a missing field, a route id that is not in the routes XML): the
  user must fix the files, so we raise :class:`Bench2DriveInputError` naming the file and the field;
* the input is valid but a metric is undefined for it -- exactly the situations in which the official
  Bench2Drive scripts crash (division by zero, no junction on a failed Traffic_Signs route, a missing metric
  log).  Those are reported per metric as :class:`MetricUndefined` so the other numbers are still produced.
"""

from __future__ import annotations

from pathlib import Path


class Bench2DriveInputError(ValueError):
    """Malformed or inconsistent Bench2Drive input; the message names the file and the field."""

    def __init__(self, path: str | Path | None, field: str | None, problem: str):
        self.path = None if path is None else str(path)
        self.field = field
        self.problem = problem
        where = self.path or "<input>"
        if field:
            where = f"{where}: field {field!r}"
        super().__init__(f"{where}: {problem}")


class MetricUndefined(ArithmeticError):
    """A metric has no defined value for this input (the official tool would crash here).

    ``official`` says what the unmodified Bench2Drive tool does on the same input, e.g.
    ``"ability_benchmark.py: ZeroDivisionError: division by zero"``.
    """

    def __init__(self, metric: str, reason: str, official: str):
        self.metric = metric
        self.reason = reason
        self.official = official
        super().__init__(f"{metric} is undefined: {reason} (official tool: {official})")
