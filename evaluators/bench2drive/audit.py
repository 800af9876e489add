"""Strict mode: what the official tools do silently, listed so a user can see it.

Nothing here changes a number; every finding says which number it affects and how.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .ability import AbilityResult
from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .efficiency import EfficiencyResult
from .merge import MergeResult, is_success
from .numeric import sequential_sum
from .penalty import PENALTY_TOLERANCE, penalty_from_infractions
from .records import ResultSet, RouteRecord
from .routes import RouteSpec
from .smoothness import SmoothnessResult

_ROUTE_PREFIX = re.compile(r"^(RouteScenario_[^_]+_rep\d+)_")


@dataclass(frozen=True)
class Finding:
    kind: str
    summary: str
    effect: str  # which published number it changes and how
    items: tuple[str, ...] = ()


def _duplicates(merge: MergeResult, config: Bench2DriveConfig) -> list[Finding]:
    groups: dict[str, list[RouteRecord]] = defaultdict(list)
    for rec in merge.records:
        groups[rec.xml_id].append(rec)
    items = []
    order_dependent = []
    for rid, recs in groups.items():
        if len(recs) < 2:
            continue
        outcomes = {(is_success(r, config), r.score_route) for r in recs}
        srcs = ", ".join(f"{r.source_file}[{r.index}] {r.status} DS={r.score_composed}" for r in recs)
        items.append(f"{recs[0].route_id}: {len(recs)} records ({srcs}); abilities use the one from "
                     f"{recs[0].source_file}")
        if len(outcomes) > 1:
            order_dependent.append(recs[0].route_id)
    out = []
    if items:
        out.append(Finding(
            "duplicate_records", f"{len(items)} route(s) have more than one record",
            "driving score and success rate count every copy (eval num > routes); the abilities use the first "
            "copy in merged order, which follows the file reading order", tuple(items)))
    if order_dependent:
        out.append(Finding(
            "order_dependent_abilities",
            f"{len(order_dependent)} duplicated route(s) have copies with different outcomes",
            "the ability scores depend on the order in which the filesystem lists the checkpoint files",
            tuple(order_dependent)))
    return out


def _coverage(routes: Sequence[RouteSpec], merge: MergeResult, config: Bench2DriveConfig) -> list[Finding]:
    out = []
    have = {r.xml_id for r in merge.records}
    missing = [f"RouteScenario_{r.route_id} ({r.scenario_type}, {r.town})" for r in routes if r.route_id not in have]
    if missing:
        out.append(Finding(
            "missing_routes", f"{len(missing)} route(s) of the routes XML have no record",
            f"driving score and success rate count them as 0 (still divided by {config.route_divisor}); the "
            "abilities drop them from numerator and denominator ('crashed')", tuple(missing)))
    if merge.eval_num != config.route_divisor or len(routes) != config.route_divisor:
        firsts = {}
        for rec in merge.records:
            firsts.setdefault(rec.xml_id, rec)
        ds_xml = sequential_sum(firsts[r.route_id].score_composed if r.route_id in firsts else 0.0
                                for r in routes) / len(routes)
        out.append(Finding(
            "fixed_divisor",
            f"{merge.eval_num} record(s) and {len(routes)} XML route(s), but merge divides by "
            f"{config.route_divisor}",
            f"driving score {merge.driving_score:.4f} is sum/{config.route_divisor}; averaged over the "
            f"{len(routes)} XML routes (one record each) it would be {ds_xml:.4f}"))
    return out


def _statuses(merge: MergeResult, config: Bench2DriveConfig) -> list[Finding]:
    items = []
    for rec in merge.records:
        if rec.status in config.success_statuses and not is_success(rec, config):
            lists = [k for k, v in rec.infractions.items() if v and k not in config.success_ignored_infractions]
            items.append(f"{rec.route_id}: {rec.status} with {', '.join(lists)}")
    if not items:
        return []
    return [Finding("finished_not_success", f"{len(items)} finished route(s) are not successes",
                    "success rate and abilities: any infraction other than min speed (route_timeout, "
                    "outside lanes of any %, collisions, ...) blocks success", tuple(items))]


def _penalties(merge: MergeResult) -> list[Finding]:
    items = []
    for rec in merge.records:
        p = penalty_from_infractions(rec.infractions)
        if rec.score_penalty is not None and p is not None and abs(p - rec.score_penalty) > PENALTY_TOLERANCE:
            items.append(f"{rec.route_id} ({rec.source_file}): score_penalty {rec.score_penalty} but the "
                         f"infraction lists give {p:.6f}")
        if rec.score_penalty is not None:
            expect = max(rec.score_route * rec.score_penalty, 0.0)
            if abs(expect - rec.score_composed) > PENALTY_TOLERANCE * max(1.0, abs(rec.score_route)):
                items.append(f"{rec.route_id} ({rec.source_file}): score_composed {rec.score_composed} but "
                             f"score_route x score_penalty = {expect:.6f}")
    if not items:
        return []
    return [Finding("inconsistent_scores", f"{len(items)} record score(s) disagree with their infractions",
                    "none: the tools use score_composed as written; the record may have been edited",
                    tuple(items))]


def _efficiency(eff: EfficiencyResult, config: Bench2DriveConfig) -> list[Finding]:
    dropped, misparsed, excluded = [], [], []
    for rec in eff.per_record:
        if not rec.values:
            excluded.append(rec.route_id)
        for v in rec.values:
            if v.parsed is not None and not v.kept:
                dropped.append(f"{rec.route_id}: {v.parsed!r}")
            if v.parsed is not None and v.written is not None and v.parsed != v.written:
                misparsed.append(f"{rec.route_id}: message says {v.written!r}, the regex reads {v.parsed!r}")
    out = []
    if dropped:
        out.append(Finding("efficiency_dropped", f"{len(dropped)} min-speed percentage(s) above "
                                                 f"{config.efficiency_max_percent:g} dropped",
                           "efficiency: these values are ignored", tuple(dropped)))
    if misparsed:
        out.append(Finding("efficiency_misparsed", f"{len(misparsed)} min-speed percentage(s) mis-read",
                           "efficiency: the regex value is used (e.g. '2.5e+16%' reads 16, '-5%' reads 5)",
                           tuple(misparsed)))
    if excluded:
        out.append(Finding("efficiency_excluded", f"{len(excluded)} record(s) have no min-speed message",
                           "efficiency: left out of the mean (not counted as 0 or 100)", tuple(excluded)))
    return out


def _smoothness(sm: SmoothnessResult, merge: MergeResult, config: Bench2DriveConfig) -> list[Finding]:
    short, tails = [], 0
    size = config.comfort_chunk_steps
    for rec, n in zip(merge.records, sm.n_steps):
        if n is None:
            continue
        if n <= size:
            short.append(f"{rec.route_id}: {n} steps")
        else:
            tails += n % size
    out = []
    if short:
        out.append(Finding("short_logs", f"{len(short)} metric log(s) of at most {size} steps",
                           "smoothness: judged as a single chunk worth 0 or 1 (window shrinks to the log length)",
                           tuple(short)))
    if tails:
        out.append(Finding("discarded_tail_steps", f"{tails} step(s) in trailing partial chunks",
                           "smoothness: not judged at all"))
    return out


def _superseded(merge: MergeResult, metric_dir: str | Path | None) -> list[Finding]:
    if metric_dir is None or not Path(metric_dir).is_dir():
        return []
    used = {r.save_name for r in merge.records}
    routes = {r.route_id for r in merge.records}
    stale, foreign = [], []
    with os.scandir(metric_dir) as it:
        names = sorted(e.name for e in it if e.is_dir())
    for name in names:
        if name in used:
            continue
        m = _ROUTE_PREFIX.match(name)
        (stale if m and m.group(1) in routes else foreign).append(name)
    out = []
    if stale:
        out.append(Finding("superseded_attempts", f"{len(stale)} metric log folder(s) of earlier attempts",
                           "none: only each final record's save_name is read (an earlier attempt of a resumed "
                           "route is ignored)", tuple(stale)))
    if foreign:
        out.append(Finding("unreferenced_logs", f"{len(foreign)} metric log folder(s) match no record",
                           "none: they are not read", tuple(foreign)))
    return out


def _tasks(results: ResultSet) -> list[Finding]:
    out = []
    if results.skipped:
        out.append(Finding("skipped_files", f"{len(results.skipped)} *.json file(s) not merged",
                           "none", tuple(f"{s.name}: {s.reason} ({s.official})" for s in results.skipped)))
    unfinished = [f"{f.name}: entry_status {f.entry_status}, progress {list(f.progress) if f.progress else '?'}, "
                  f"{len(f.records)} record(s)"
                  for f in results.files
                  if f.entry_status != "Finished" or (f.progress and f.progress[0] < f.progress[1])]
    if unfinished:
        out.append(Finding("unfinished_tasks", f"{len(unfinished)} task file(s) did not finish",
                           "their missing routes count 0 in driving score / success rate", tuple(unfinished)))
    return out


def _traffic_signs(ab: AbilityResult) -> list[Finding]:
    items = [f"RouteScenario_{o.route_id}: score_route {o.record.score_route} > threshold "
             f"{100 * o.junction_threshold:.4f}%"
             for o in ab.outcomes if o.partial_credit and o.record is not None and o.junction_threshold is not None]
    if not items:
        return []
    return [Finding("traffic_signs_partial_credit", f"{len(items)} failed route(s) credited as Traffic_Signs "
                                                    "successes", "Traffic_Signs numerator (+1 each)", tuple(items))]


def audit(results: ResultSet, routes: Sequence[RouteSpec], merge: MergeResult, abilities: AbilityResult,
          efficiency: EfficiencyResult, smoothness: SmoothnessResult, metric_dir: str | Path | None,
          config: Bench2DriveConfig = DEFAULT_CONFIG) -> tuple[Finding, ...]:
    findings: list[Finding] = []
    findings += _tasks(results)
    findings += _duplicates(merge, config)
    findings += _coverage(routes, merge, config)
    findings += _statuses(merge, config)
    findings += _penalties(merge)
    findings += _efficiency(efficiency, config)
    findings += _smoothness(smoothness, merge, config)
    findings += _superseded(merge, metric_dir)
    findings += _traffic_signs(abilities)
    return tuple(findings)
