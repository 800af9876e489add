"""Bench2Drive closed-loop metrics, reproducing the official tools of Bench2Drive 0.0.4 from leaderboard outputs.

Layers: ``routes``/``records``/``junctions``/``metric_logs`` parse and validate inputs; ``merge`` (driving score,
success rate), ``ability``, ``efficiency``, ``comfort``/``smoothness`` compute; ``score`` orchestrates; ``audit``
lists the official tools' silent behaviours (strict mode); ``render``/``cli`` present.  Spec:
``shared/spec/bench2drive-metrics.md``.
"""

from .config import DEFAULT_CONFIG, Bench2DriveConfig, ComfortBounds
from .errors import Bench2DriveInputError, MetricUndefined
from .score import Bench2DriveReport, official_outputs, report_json, route_rows, score_results

__all__ = [
    "DEFAULT_CONFIG",
    "Bench2DriveConfig",
    "Bench2DriveInputError",
    "Bench2DriveReport",
    "ComfortBounds",
    "MetricUndefined",
    "official_outputs",
    "report_json",
    "route_rows",
    "score_results",
]
