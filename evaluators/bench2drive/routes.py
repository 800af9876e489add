"""The routes XML (``leaderboard/data/*.xml``): which routes exist, their town and first scenario."""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .errors import Bench2DriveInputError


@dataclass(frozen=True)
class RouteSpec:
    """One ``<route>`` of the XML, reduced to what the metrics use."""

    route_id: str  # the XML ``id`` attribute, e.g. "1711"
    town: str
    scenario_type: str  # ``type`` of the route's first <scenario>: decides its abilities
    scenario_name: str  # ``name`` of the same scenario (what RouteRecord.scenario_name holds)
    num_keypoints: int

    @property
    def key(self) -> str:
        return f"RouteScenario_{self.route_id}"


def _read_xml(path: Path) -> ET.Element:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return ET.parse(fh).getroot()
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise Bench2DriveInputError(path, None, "routes file not found") from None
    except (ET.ParseError, OSError, EOFError) as exc:
        raise Bench2DriveInputError(path, None, f"not a readable routes XML ({exc})") from None


def load_routes(path: str | Path) -> tuple[RouteSpec, ...]:
    """Routes in file order.  Accepts ``.xml`` and ``.xml.gz``."""
    path = Path(path)
    root = _read_xml(path)
    routes: list[RouteSpec] = []
    # ability_benchmark.py uses root.findall('route'): direct children only.
    for n, elem in enumerate(root.findall("route")):
        rid = elem.get("id")
        where = f"route[{n}]" if rid is None else f"route id={rid}"
        if not rid:
            raise Bench2DriveInputError(path, f"{where}/@id", "missing route id")
        town = elem.get("town")
        if not town:
            raise Bench2DriveInputError(path, f"{where}/@town", "missing town")
        scenarios = elem.find("scenarios")
        first = None if scenarios is None else scenarios.find("scenario")
        if first is None or not first.get("type"):
            raise Bench2DriveInputError(
                path, f"{where}/scenarios/scenario/@type",
                "route has no scenario type (the ability of a route is its first scenario's type)")
        waypoints = elem.find("waypoints")
        keypoints = 0 if waypoints is None else len(waypoints.findall("position"))
        routes.append(RouteSpec(rid, town, first.get("type", ""), first.get("name", ""), keypoints))
    if not routes:
        raise Bench2DriveInputError(path, "route", "no <route> elements under the root")
    return tuple(routes)
