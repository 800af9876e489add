"""Per-route ``metric_info.json`` logs written by Bench2DriveZoo-style agents (one entry per 20 Hz step)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import Bench2DriveInputError

METRIC_FILE = "metric_info.json"
# efficiency_smoothness_benchmark.py reads these six per step (KeyError without location/rotation) but only the
# first four enter the metric.
_USED = ("acceleration", "angular_velocity", "forward_vector", "right_vector")
_REQUIRED = _USED + ("location", "rotation")


@dataclass(frozen=True)
class MetricLog:
    """World-frame hero kinematics, one row per step in the file's key order."""

    path: str
    acceleration: np.ndarray  # (n, 3) m/s^2
    angular_velocity: np.ndarray  # (n, 3) deg/s (CARLA's unit)
    forward_vector: np.ndarray  # (n, 3) unit vector
    right_vector: np.ndarray  # (n, 3) unit vector

    @property
    def n_steps(self) -> int:
        return int(self.acceleration.shape[0])


def metric_log_path(metric_dir: str | Path, save_name: str) -> Path:
    """Only the record's own ``save_name`` folder counts; SAVE_PATH also keeps superseded attempts."""
    return Path(metric_dir) / save_name / METRIC_FILE


def _locate_bad_step(steps: dict, path: Path, field: str) -> Bench2DriveInputError:
    for key, step in steps.items():
        if not isinstance(step, dict):
            return Bench2DriveInputError(path, f"{key}", "expected an object per step")
        if field not in step:
            return Bench2DriveInputError(path, f"{key}.{field}", "missing")
        value = step[field]
        if (not isinstance(value, list) or len(value) != 3
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return Bench2DriveInputError(path, f"{key}.{field}", f"expected [x, y, z] numbers, got {value!r}")
    return Bench2DriveInputError(path, field, "inconsistent values")


def _column(values: list, steps: dict, path: Path, field: str) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise _locate_bad_step(steps, path, field) from None
    if arr.ndim != 2 or arr.shape[1] != 3:
        if not values:
            return np.zeros((0, 3))
        raise _locate_bad_step(steps, path, field)
    return arr


def load_metric_log(path: str | Path) -> MetricLog:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            steps = json.load(fh)  # dicts keep the file's key order, which is the step order the tool uses
    except FileNotFoundError:
        raise Bench2DriveInputError(path, None, "metric log not found") from None
    except json.JSONDecodeError as exc:
        raise Bench2DriveInputError(path, None, f"malformed JSON ({exc})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Bench2DriveInputError(path, None, f"cannot read ({exc})") from None
    if not isinstance(steps, dict):
        raise Bench2DriveInputError(path, None, "expected an object keyed by step number")
    rows = list(steps.values())
    columns: dict[str, list] = {}
    for field in _REQUIRED:
        try:
            columns[field] = [row[field] for row in rows]
        except (KeyError, TypeError):
            raise _locate_bad_step(steps, path, field) from None
    arrays = {f: _column(columns[f], steps, path, f) for f in _USED}
    return MetricLog(str(path), arrays["acceleration"], arrays["angular_velocity"], arrays["forward_vector"],
                     arrays["right_vector"])
