"""Junction table: the Traffic_Signs thresholds that ability_benchmark.py derives from CARLA map geometry.

The official tool traces each failed Traffic_Signs route on the town's OpenDRIVE map (GlobalRoutePlanner, 1 m) and
takes the 1-based index ``count`` of the first junction waypoint; the route earns partial credit when
``score_route / 100 > (count + 8) / len(trace)``.  We take ``count`` and ``len(trace)`` from a table instead of a
CARLA install.  Format (JSON object keyed by ``"RouteScenario_<id>"`` or ``"<id>"``)::

    {"RouteScenario_2050": {"town": "Town12", "type": "...", "num_waypoints": 25,
                            "first_junction_count": 3, "junction_completion": 0.44}, ...}

``first_junction_count: null`` means the trace has no junction.  ``junction_completion`` alone is accepted
when the counts are unknown; when both are given they must agree.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .errors import Bench2DriveInputError


@dataclass(frozen=True)
class JunctionEntry:
    route_id: str  # XML id
    num_waypoints: int | None
    first_junction_count: int | None
    junction_completion: float | None  # as given in the table
    has_junction: bool

    def threshold(self, config: Bench2DriveConfig = DEFAULT_CONFIG) -> float:
        """``float(count + 8) / len(trace)``, computed as the tool does when the counts are known."""
        if not self.has_junction:
            raise ValueError(f"route {self.route_id} has no junction")
        if self.first_junction_count is not None and self.num_waypoints is not None:
            return float(self.first_junction_count + config.junction_offset) / self.num_waypoints
        assert self.junction_completion is not None
        return self.junction_completion


def _positive_int(value: Any, path: Path, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Bench2DriveInputError(path, field, f"expected a positive integer or null, got {value!r}")
    return value


def parse_junction_table(data: Any, path: Path,
                         config: Bench2DriveConfig = DEFAULT_CONFIG) -> Mapping[str, JunctionEntry]:
    if not isinstance(data, dict):
        raise Bench2DriveInputError(path, None, "expected a JSON object keyed by route id")
    table: dict[str, JunctionEntry] = {}
    for key, entry in data.items():
        rid = key.split("_")[1] if key.startswith("RouteScenario_") else key
        if not rid or not isinstance(entry, dict):
            raise Bench2DriveInputError(path, key, "expected an object per route keyed by 'RouteScenario_<id>'")
        if rid in table:
            raise Bench2DriveInputError(path, key, f"route {rid} is listed twice")
        n = _positive_int(entry.get("num_waypoints"), path, f"{key}.num_waypoints")
        count = _positive_int(entry.get("first_junction_count"), path, f"{key}.first_junction_count")
        jc = entry.get("junction_completion")
        if jc is not None and (isinstance(jc, bool) or not isinstance(jc, (int, float)) or not math.isfinite(jc)):
            raise Bench2DriveInputError(path, f"{key}.junction_completion", f"expected a number or null, got {jc!r}")
        if "first_junction_count" in entry and count is None:
            has_junction = False  # explicit null: the trace never enters a junction
        elif count is not None:
            if n is None:
                raise Bench2DriveInputError(path, f"{key}.num_waypoints", "required with first_junction_count")
            if count > n:
                raise Bench2DriveInputError(path, f"{key}.first_junction_count",
                                            f"{count} exceeds num_waypoints {n}")
            has_junction = True
            if jc is not None:
                expected = float(count + config.junction_offset) / n
                if abs(expected - jc) > 1e-12:
                    raise Bench2DriveInputError(
                        path, f"{key}.junction_completion",
                        f"{jc!r} disagrees with (first_junction_count + {config.junction_offset}) / "
                        f"num_waypoints = {expected!r}")
        elif jc is not None:
            has_junction = True
        else:
            raise Bench2DriveInputError(path, key, "needs first_junction_count and num_waypoints, "
                                                   "or junction_completion")
        table[rid] = JunctionEntry(rid, n, count, None if jc is None else float(jc), has_junction)
    return MappingProxyType(table)


def load_junction_table(path: str | Path, config: Bench2DriveConfig = DEFAULT_CONFIG) -> Mapping[str, JunctionEntry]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise Bench2DriveInputError(path, None, "junction table not found") from None
    except json.JSONDecodeError as exc:
        raise Bench2DriveInputError(path, None, f"malformed JSON ({exc})") from None
    return parse_junction_table(data, path, config)
