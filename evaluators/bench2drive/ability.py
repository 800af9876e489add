"""Multi-ability scores (tools/ability_benchmark.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .errors import MetricUndefined
from .junctions import JunctionEntry
from .merge import is_success
from .numeric import sequential_sum
from .records import RouteRecord
from .routes import RouteSpec

_TOOL = "ability_benchmark.py"


@dataclass(frozen=True)
class RouteAbilityOutcome:
    route_id: str  # XML id
    town: str
    scenario_type: str
    abilities: tuple[str, ...]
    record: RouteRecord | None  # the record the tool uses: first match in merged order
    success: bool | None  # None: not evaluated ("crashed", outside every denominator)
    junction_threshold: float | None  # failed Traffic_Signs routes only
    partial_credit: bool | None  # failed Traffic_Signs routes only; None when undecidable


@dataclass(frozen=True)
class AbilityResult:
    scores: Mapping[str, float | None]  # fraction per ability; None where undefined
    mean: float | None
    successes: Mapping[str, int]  # numerators (partial credit included)
    totals: Mapping[str, int]  # denominators
    crashed: tuple[tuple[str, str], ...]  # (scenario type, XML id) of routes without a record
    outcomes: tuple[RouteAbilityOutcome, ...]  # in the tool's order (routes stably sorted by town)
    errors: tuple[MetricUndefined, ...]

    @property
    def defined(self) -> bool:
        return not self.errors


def first_records(merged_records: Sequence[RouteRecord]) -> dict[str, RouteRecord]:
    """XML id -> first record in merged order, the one ability_benchmark.py's linear search returns."""
    found: dict[str, RouteRecord] = {}
    for rec in merged_records:
        found.setdefault(rec.xml_id, rec)
    return found


def _partial_credit(rec: RouteRecord, threshold: float, config: Bench2DriveConfig) -> bool:
    # score_route is a distance fraction, the threshold an index fraction of the 1 m trace; strict float compare.
    if any(rec.infractions.get(k) for k in config.junction_blocking_infractions):
        return False
    return rec.score_route / 100.0 > threshold


def compute_abilities(routes: Sequence[RouteSpec], merged_records: Sequence[RouteRecord],
                      junctions: Mapping[str, JunctionEntry] | None,
                      config: Bench2DriveConfig = DEFAULT_CONFIG, *,
                      junction_source: str = "--junctions") -> AbilityResult:
    names = config.ability_names()
    succ = {a: 0 for a in names}
    total = {a: 0 for a in names}
    lookup = first_records(merged_records)
    crashed: list[tuple[str, str]] = []
    outcomes: list[RouteAbilityOutcome] = []
    no_table: list[str] = []
    no_entry: list[str] = []
    no_junction: list[str] = []
    ts_types = dict(config.ability_types)["Traffic_Signs"]

    for route in sorted(routes, key=lambda r: r.town):  # stable, like the tool's sorted(..., key=town)
        abilities = config.abilities_of(route.scenario_type)
        rec = lookup.get(route.route_id)
        if rec is None:
            crashed.append((route.scenario_type, route.route_id))
            outcomes.append(RouteAbilityOutcome(route.route_id, route.town, route.scenario_type, abilities,
                                                None, None, None, None))
            continue
        success = is_success(rec, config)
        for a in abilities:
            total[a] += 1
            succ[a] += success
        threshold = credit = None
        if route.scenario_type in ts_types and not success:
            entry = None if junctions is None else junctions.get(route.route_id)
            if junctions is None:
                no_table.append(route.route_id)
            elif entry is None:
                no_entry.append(route.route_id)
            elif not entry.has_junction:
                no_junction.append(route.route_id)
            else:
                threshold = entry.threshold(config)
                credit = _partial_credit(rec, threshold, config)
                succ["Traffic_Signs"] += credit
        outcomes.append(RouteAbilityOutcome(route.route_id, route.town, route.scenario_type, abilities,
                                            rec, success, threshold, credit))

    errors: list[MetricUndefined] = []
    undefined: set[str] = set()
    if no_table or no_entry or no_junction:
        undefined.add("Traffic_Signs")
    if no_table:
        errors.append(MetricUndefined(
            "Traffic_Signs",
            f"failed Traffic_Signs routes {no_table} need their junction threshold; pass a junction table "
            f"({junction_source})",
            f"{_TOOL} traces them on the CARLA town maps ($CARLA_ROOT/.../OpenDrive/<Town>.xodr)"))
    if no_entry:
        errors.append(MetricUndefined(
            "Traffic_Signs", f"failed Traffic_Signs routes {no_entry} are missing from the junction table",
            f"{_TOOL} traces them on the CARLA town maps"))
    if no_junction:
        errors.append(MetricUndefined(
            "Traffic_Signs",
            f"failed Traffic_Signs routes {no_junction} never enter a junction (junction table: "
            f"first_junction_count is null), so their partial credit is undefined",
            f'{_TOOL}: RuntimeError: No junction found in route'))
    for a in names:
        if total[a] == 0:
            undefined.add(a)
            errors.append(MetricUndefined(
                a, f"no evaluated route of this ability (routes without a record are dropped from the "
                   f"denominator: {[rid for t, rid in crashed if a in config.abilities_of(t)]})",
                f"{_TOOL}: ZeroDivisionError: division by zero"))

    scores: dict[str, float | None] = {a: (None if a in undefined else succ[a] / total[a]) for a in names}
    mean = None if undefined else sequential_sum(scores[a] for a in names) / len(names)  # type: ignore[misc]
    return AbilityResult(MappingProxyType(scores), mean, MappingProxyType(succ), MappingProxyType(total),
                         tuple(crashed), tuple(outcomes), tuple(errors))


def ability_json(result: AbilityResult) -> dict[str, Any]:
    """The content ability_benchmark.py writes to ``merged_ability.json`` (only when it is defined)."""
    if result.errors:
        raise result.errors[0]
    out: dict[str, Any] = dict(result.scores)
    out["mean"] = result.mean
    out["crashed"] = [list(c) for c in result.crashed]
    return out
