"""Every public Bench2Drive result set reproduces the official tools' outputs (shared/golden/bench2drive).

The checks are driven by what each set's ``outputs/`` contains (a file the tool wrote, or the error it raised),
never by the set's name, so held-back sets are checked the same way.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tarfile
from pathlib import Path

import pytest

from evaluators.bench2drive import Bench2DriveReport, official_outputs, report_json, score_results
from evaluators.bench2drive.merge import merge_records, merged_json
from evaluators.bench2drive.records import load_results

pytestmark = pytest.mark.golden

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "bench2drive"
# Without the folder every parametrised test still runs once and skips, naming the missing folder.
CASES = sorted(p.name[: -len(".tar.gz")] for p in GOLDEN.glob("*.tar.gz")) if GOLDEN.is_dir() else ["no-golden"]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory):
    cache: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in cache:
            dest = tmp_path_factory.mktemp(case)
            with tarfile.open(GOLDEN / f"{case}.tar.gz") as tar:
                tar.extractall(dest, filter="data")
            roots = [p for p in dest.iterdir() if p.is_dir()]
            cache[case] = roots[0] if len(roots) == 1 and not (dest / "inputs").exists() else dest
        return cache[case]

    return get


def _case_or_skip(extracted, case: str) -> Path:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN} (needs the shared/ folder next to the project)")
    return extracted(case)


def _load(path: Path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@functools.lru_cache(maxsize=None)
def _score(root: Path, file_order: str = "recorded", strict: bool = False) -> Bench2DriveReport:
    """Scored once per (set, order, mode); reports are immutable so tests can share them."""
    summary = _load(root / "outputs" / "summary.json")
    order = summary["merge_glob_order"] if file_order == "recorded" else file_order
    inputs = root / "inputs"
    return score_results(inputs / "eval_json", inputs / "routes.xml", junctions=inputs / "junction_table.json",
                         metric_dir=inputs / "metric", file_order=order, strict=strict)


def _official_error_type(summary: dict, step: str) -> str | None:
    err = (summary.get("errors") or {}).get(step) or summary["steps"][step].get("error")
    return None if not err else err.split(":")[0]


def _parse_stdout(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("Driving "):
            out[key] = float(value)
    return out


def test_golden_sets_present():
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN}")
    assert CASES, f"no *.tar.gz result sets under {GOLDEN}"


@pytest.mark.parametrize("case", CASES)
def test_merged_json_reproduced_exactly(extracted, case):
    root = _case_or_skip(extracted, case)
    report = _score(root)
    golden = _load(root / "outputs" / "merged.json")
    ours = merged_json(report.merge)
    # Whole-structure equality: every record (key order aside), every number bit for bit.
    assert ours == golden
    assert [r["route_id"] for r in ours["_checkpoint"]["records"]] == \
        [r["route_id"] for r in golden["_checkpoint"]["records"]]
    assert report.merge.driving_score == golden["driving score"]
    assert report.merge.success_rate == golden["success rate"]
    assert report.merge.eval_num == golden["eval num"]
    summary = _load(root / "outputs" / "summary.json")
    printed = summary["merge_result"].get("success_route_ids_printed")
    if printed is not None:
        assert list(report.merge.success_route_ids) == printed


@pytest.mark.parametrize("case", CASES)
def test_merge_with_this_machines_file_order(extracted, case):
    """Without the recorded glob order only the summation order changes: DS to ~1e-12, SR exactly."""
    root = _case_or_skip(extracted, case)
    golden = _load(root / "outputs" / "merged.json")
    for order in ("filesystem", "sorted"):
        merge = merge_records(load_results(root / "inputs" / "eval_json", order).records)
        assert math.isclose(merge.driving_score, golden["driving score"], rel_tol=1e-12, abs_tol=1e-12)
        assert merge.success_rate == golden["success rate"]
        assert merge.eval_num == golden["eval num"]


@pytest.mark.parametrize("case", CASES)
def test_abilities_reproduced_or_failure_explained(extracted, case):
    root = _case_or_skip(extracted, case)
    report = _score(root)
    summary = _load(root / "outputs" / "summary.json")
    golden_path = root / "outputs" / "merged_ability.json"
    if golden_path.exists():
        golden = _load(golden_path)
        assert report.abilities.defined, [str(e) for e in report.abilities.errors]
        assert official_outputs(report)["merged_ability.json"] == golden
        for name in ("Overtaking", "Merging", "Emergency_Brake", "Give_Way", "Traffic_Signs"):
            assert report.abilities.scores[name] == golden[name]
        assert report.abilities.mean == golden["mean"]
    else:
        error_type = _official_error_type(summary, "ability")
        assert error_type, "the ability tool wrote no output, so its error must be recorded"
        assert not report.abilities.defined
        assert report.abilities.mean is None
        assert any(error_type in e.official for e in report.abilities.errors), \
            [e.official for e in report.abilities.errors]
        # The abilities the failure does not touch keep a defined value.
        touched = {e.metric for e in report.abilities.errors}
        assert all(v is not None for k, v in report.abilities.scores.items() if k not in touched)
        assert "merged_ability.json" not in official_outputs(report)


@pytest.mark.parametrize("case", CASES)
def test_efficiency_and_smoothness_reproduced_or_failure_explained(extracted, case):
    root = _case_or_skip(extracted, case)
    report = _score(root)
    summary = _load(root / "outputs" / "summary.json")
    stdout = _parse_stdout((root / "outputs" / "efficiency_smoothness.stdout").read_text())
    if "Driving Efficiency" in stdout:
        assert report.efficiency.value == stdout["Driving Efficiency"]
        assert repr(report.efficiency.value) == summary["efficiency_smoothness_result"]["Driving Efficiency (repr)"]
    if "Driving Smoothness" in stdout:
        assert report.smoothness.value == stdout["Driving Smoothness"]
        assert repr(report.smoothness.value) == summary["efficiency_smoothness_result"]["Driving Smoothness (repr)"]
    if "Driving Efficiency" not in stdout or "Driving Smoothness" not in stdout:
        error_type = _official_error_type(summary, "efficiency_smoothness")
        assert error_type, "the efficiency tool printed nothing, so its error must be recorded"
        errors = report.efficiency.errors + report.smoothness.errors
        assert any(error_type in e.official for e in errors), [e.official for e in errors]
    else:
        assert not report.efficiency.errors and not report.smoothness.errors


@pytest.mark.parametrize("case", CASES)
def test_per_route_records_match_diagnostics(extracted, case):
    root = _case_or_skip(extracted, case)
    diag_path = root / "outputs" / "diagnostics.json"
    if not diag_path.exists():
        pytest.skip("this set has no per-route diagnostics")
    diag = _load(diag_path)["routes"]
    report = _score(root)
    rows = report_json(report)["routes"]
    assert [r["route_id"] for r in rows] == [d["route_id"] for d in diag]
    for row, d in zip(rows, diag):
        rid = d["route_id"]
        for key in ("save_name", "status", "score_composed", "score_route", "success", "min_speed_values_parsed"):
            if key in d:
                assert row[key] == d[key], (rid, key)
        if "n_steps" in d:
            if row["n_steps"] is None or d["n_steps"] is None:  # a log that could not be read
                assert (row["n_steps"] or 0) == (d["n_steps"] or 0), rid
            else:
                assert row["n_steps"] == d["n_steps"], rid
        for key in ("smoothness", "efficiency"):
            if key in d:
                assert row[key] == d[key], (rid, key)
        tsj = d.get("traffic_signs_junction")
        if row["traffic_signs_threshold"] is not None:
            assert tsj is not None and row["traffic_signs_threshold"] == tsj["junction_completion"], rid


@pytest.mark.parametrize("case", CASES)
def test_strict_findings_are_consistent_with_the_data(extracted, case):
    root = _case_or_skip(extracted, case)
    report = _score(root, strict=True)
    findings = {f.kind: f for f in report.findings}
    # Scores as written agree with the infraction lists (the records come from the real StatisticsManager).
    assert "inconsistent_scores" not in findings
    # Every metric-log folder that no final record names is reported as superseded or unreferenced.
    used = {r.save_name for r in report.merge.records}
    metric = root / "inputs" / "metric"
    stale = {e.name for e in os.scandir(metric) if e.is_dir()} - used
    listed = set()
    for kind in ("superseded_attempts", "unreferenced_logs"):
        if kind in findings:
            listed |= set(findings[kind].items)
    assert listed == stale
    n_unique = len({r.xml_id for r in report.merge.records})
    assert ("duplicate_records" in findings) == (n_unique < report.merge.eval_num)
    n_missing = len({r.route_id for r in report.routes} - {r.xml_id for r in report.merge.records})
    assert ("missing_routes" in findings) == (n_missing > 0)
    if n_missing:
        assert len(findings["missing_routes"].items) == n_missing
    assert len(report.abilities.crashed) == n_missing
    # Strict mode lists; it never changes a number.
    plain = _score(root)
    assert report_json(plain)["readme"] == report_json(report)["readme"]
