"""Score a folder of CARLA-leaderboard outputs the way Bench2Drive's three tools do, in one call."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ability import AbilityResult, ability_json, compute_abilities, first_records
from .audit import Finding, audit
from .config import DEFAULT_CONFIG, INFRACTION_KEYS, Bench2DriveConfig
from .efficiency import EfficiencyResult, compute_efficiency
from .errors import Bench2DriveInputError, MetricUndefined
from .junctions import JunctionEntry, load_junction_table
from .merge import MergeResult, is_success, merge_records, merged_json
from .penalty import penalty_from_infractions
from .records import FileOrder, ResultSet, load_results
from .routes import RouteSpec, load_routes
from .smoothness import SmoothnessResult, compute_smoothness

SCHEMA = "irlvla-bench/bench2drive-score/v1"


@dataclass(frozen=True)
class Bench2DriveReport:
    results: ResultSet
    routes: tuple[RouteSpec, ...]
    merge: MergeResult
    abilities: AbilityResult
    efficiency: EfficiencyResult
    smoothness: SmoothnessResult
    findings: tuple[Finding, ...] | None  # None unless strict
    inputs: Mapping[str, Any]

    @property
    def errors(self) -> tuple[MetricUndefined, ...]:
        return self.abilities.errors + self.efficiency.errors + self.smoothness.errors

    @property
    def complete(self) -> bool:
        return not self.errors


def check_route_ids(results: ResultSet, routes: tuple[RouteSpec, ...], routes_path: str | Path) -> None:
    known = {r.route_id for r in routes}
    for rec in results.records:
        if rec.xml_id not in known:
            raise Bench2DriveInputError(
                Path(results.directory) / rec.source_file, f"_checkpoint.records[{rec.position}].route_id",
                f"{rec.route_id} is not a route of {routes_path}")


def score_results(results_dir: str | Path, routes: str | Path | tuple[RouteSpec, ...], *,
                  junctions: str | Path | Mapping[str, JunctionEntry] | None = None,
                  metric_dir: str | Path | None = None, file_order: FileOrder = "filesystem",
                  strict: bool = False, config: Bench2DriveConfig = DEFAULT_CONFIG) -> Bench2DriveReport:
    """Driving score, success rate, abilities, efficiency and smoothness of one result folder.

    Numbers equal the official tools' (0.0.4) for the same inputs and file order.  Where an official tool
    would crash, the affected metric is None and ``report.errors`` says why; the others are still computed.
    Malformed inputs raise :class:`Bench2DriveInputError`.
    """
    routes_path = "<given routes>" if isinstance(routes, tuple) else str(routes)
    route_specs = routes if isinstance(routes, tuple) else load_routes(routes)
    table = load_junction_table(junctions, config) if isinstance(junctions, (str, Path)) else junctions
    results = load_results(results_dir, file_order, config)
    check_route_ids(results, route_specs, routes_path)
    merge = merge_records(results.records, config)
    abilities = compute_abilities(route_specs, merge.records, table, config)
    efficiency = compute_efficiency(merge.records, config)
    smoothness = compute_smoothness(merge.records, metric_dir, config)
    findings = (audit(results, route_specs, merge, abilities, efficiency, smoothness, metric_dir, config)
                if strict else None)
    inputs = {
        "results_dir": str(results_dir),
        "routes": routes_path,
        "junctions": None if junctions is None else
        (str(junctions) if isinstance(junctions, (str, Path)) else "<given table>"),
        "metric_dir": None if metric_dir is None else str(metric_dir),
        "file_order": list(results.file_names),
        "file_order_source": results.order,
        "skipped_files": [{"name": s.name, "reason": s.reason, "official": s.official} for s in results.skipped],
    }
    return Bench2DriveReport(results, route_specs, merge, abilities, efficiency, smoothness, findings, inputs)


def route_rows(report: Bench2DriveReport, config: Bench2DriveConfig = DEFAULT_CONFIG) -> list[dict[str, Any]]:
    """One row per merged record (merged order) with every per-route number."""
    specs = {r.route_id: r for r in report.routes}
    firsts = first_records(report.merge.records)
    outcomes = {o.route_id: o for o in report.abilities.outcomes}
    rows = []
    for i, rec in enumerate(report.merge.records):
        spec = specs.get(rec.xml_id)
        outcome = outcomes.get(rec.xml_id)
        used = firsts.get(rec.xml_id) is rec
        eff = report.efficiency.per_record[i]
        rows.append({
            "route_id": rec.route_id,
            "xml_id": rec.xml_id,
            "source_file": rec.source_file,
            "save_name": rec.save_name,
            "town": spec.town if spec else rec.town_name,
            "scenario_name": rec.scenario_name,
            "scenario_type": spec.scenario_type if spec else None,
            "abilities": list(config.abilities_of(spec.scenario_type)) if spec else [],
            "status": rec.status,
            "success": is_success(rec, config),
            "score_route": rec.score_route,
            "score_penalty": rec.score_penalty,
            "score_composed": rec.score_composed,
            "penalty_from_infractions": penalty_from_infractions(rec.infractions),
            "infraction_counts": {k: rec.infraction_count(k) for k in
                                  dict.fromkeys(INFRACTION_KEYS + tuple(rec.infractions))},
            "route_length": rec.route_length,
            "used_for_abilities": used,
            "traffic_signs_threshold": outcome.junction_threshold if used and outcome else None,
            "traffic_signs_partial_credit": outcome.partial_credit if used and outcome else None,
            "min_speed_values_parsed": [v.parsed for v in eff.values],
            "min_speed_values_kept": [v.parsed for v in eff.values if v.kept],
            "efficiency": eff.value,
            "n_steps": report.smoothness.n_steps[i],
            "smoothness": report.smoothness.per_record[i],
        })
    return rows


def _error_json(e: MetricUndefined) -> dict[str, str]:
    return {"metric": e.metric, "reason": e.reason, "official": e.official}


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def report_json(report: Bench2DriveReport, config: Bench2DriveConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    ab = report.abilities
    m = report.merge
    sm = report.smoothness.value
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "complete": report.complete,
        "driving_score": m.driving_score,
        "success_rate": m.success_rate,
        "eval_num": m.eval_num,
        "n_success": m.n_success,
        "divisor": m.divisor,
        "abilities": {**dict(ab.scores), "mean": ab.mean},
        "ability_counts": {a: {"success": ab.successes[a], "total": ab.totals[a]} for a in ab.scores},
        "ability_crashed": [list(c) for c in ab.crashed],
        "efficiency": report.efficiency.value,
        "smoothness": sm,
        # The README's table: DS as is, SR x100, efficiency as is, comfort = smoothness x100, abilities x100.
        "readme": {
            "driving_score": m.driving_score,
            "success_rate": _pct(m.success_rate),
            "efficiency": report.efficiency.value,
            "comfortness": _pct(sm),
            **{a: _pct(v) for a, v in ab.scores.items()},
            "mean": _pct(ab.mean),
        },
        "errors": [_error_json(e) for e in report.errors],
        "inputs": dict(report.inputs),
        "routes": route_rows(report, config),
    }
    if report.findings is not None:
        out["findings"] = [{"kind": f.kind, "summary": f.summary, "effect": f.effect, "items": list(f.items)}
                           for f in report.findings]
    return out


def official_outputs(report: Bench2DriveReport) -> dict[str, Any]:
    """What the official tools would write/print: ``merged.json``, ``merged_ability.json``, efficiency stdout."""
    out: dict[str, Any] = {"merged.json": merged_json(report.merge)}
    if report.abilities.defined:
        out["merged_ability.json"] = ability_json(report.abilities)
    eff, sm = report.efficiency.value, report.smoothness.value
    if eff is not None and sm is not None:
        out["efficiency_smoothness.stdout"] = f"Driving Efficiency={eff!r}\nDriving Smoothness={sm!r}\n"
    return out
