"""Bench2Drive metrics on small hand-built inputs: each official quirk, each input error, each undefined case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import savgol_filter

from evaluators.bench2drive import Bench2DriveInputError, MetricUndefined, report_json, score_results
from evaluators.bench2drive.ability import compute_abilities
from evaluators.bench2drive.comfort import chunk_bounds, chunks_pass, phase_unwrap, route_smoothness_many
from evaluators.bench2drive.config import INFRACTION_KEYS
from evaluators.bench2drive.efficiency import compute_efficiency, parse_min_speed
from evaluators.bench2drive.junctions import load_junction_table, parse_junction_table
from evaluators.bench2drive.merge import is_success, merge_records
from evaluators.bench2drive.metric_logs import MetricLog, load_metric_log
from evaluators.bench2drive.records import load_results
from evaluators.bench2drive.routes import load_routes

# --------------------------------------------------------------------------------------------------- builders

ROUTES = [  # (id, town, first scenario type)
    ("999", "Town01", "Accident"),  # Overtaking
    ("1000", "Town01", "ParkingExit"),  # Merging
    ("28330", "Town02", "InvadingTurn"),  # Give_Way
    ("2050", "Town02", "SignalizedJunctionRightTurn"),  # Merging + Traffic_Signs
    ("3000", "Town03", "DynamicObjectCrossing"),  # Emergency_Brake
]


def write_routes(path: Path, routes=ROUTES) -> Path:
    parts = ["<routes>"]
    for rid, town, stype in routes:
        parts.append(f'<route id="{rid}" town="{town}"><waypoints>'
                     '<position x="0" y="0" z="0"/><position x="10" y="0" z="0"/></waypoints>'
                     f'<scenarios><scenario name="{stype}_1" type="{stype}"/></scenarios></route>')
    parts.append("</routes>")
    path.write_text("\n".join(parts))
    return path


def record(rid: str, status: str = "Completed", score_route: float = 100, composed: float | None = None,
           penalty: float = 1.0, index: int = 0, **infractions: list[str]) -> dict:
    inf = {k: list(infractions.get(k, [])) for k in INFRACTION_KEYS}
    if "min_speed_infractions" not in infractions and status in ("Completed",):
        inf["min_speed_infractions"] = ["Average speed is 80.5% of the surrounding traffic's one"]
    return {
        "index": index, "route_id": f"RouteScenario_{rid}_rep0", "scenario_name": "X_1", "weather_id": "1",
        "save_name": f"RouteScenario_{rid}_rep0_Town01_X_1_1_01_01_00_00_{index:02d}", "status": status,
        "num_infractions": sum(len(v) for v in inf.values()), "infractions": inf,
        "scores": {"score_route": score_route, "score_penalty": penalty,
                   "score_composed": score_route * penalty if composed is None else composed},
        "meta": {"route_length": 100.0, "duration_game": 10.0, "duration_system": 20.0}, "town_name": "Town01",
    }


def write_task(folder: Path, name: str, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"_checkpoint": {"global_record": {}, "progress": [len(records), len(records)], "records": records},
            "entry_status": "Finished", "eligible": True, "sensors": [], "values": [], "labels": []}
    path = folder / name
    path.write_text(json.dumps(data, indent=4))
    return path


def metric_steps(n: int, yaw_rate: float = 0.0, ax: float = 0.0) -> dict:
    return {str(i): {"acceleration": [ax, 0.0, 0.0], "angular_velocity": [0.0, 0.0, yaw_rate],
                     "forward_vector": [1.0, 0.0, 0.0], "right_vector": [0.0, 1.0, 0.0],
                     "location": [float(i), 0.0, 0.0], "rotation": [0.0, 0.0, 0.0]} for i in range(n)}


def write_metric(metric_dir: Path, rec: dict, steps: dict) -> None:
    folder = metric_dir / rec["save_name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metric_info.json").write_text(json.dumps(steps))


def make_log(acc, ang, fwd=None, right=None) -> MetricLog:
    acc = np.asarray(acc, float)
    n = acc.shape[0]
    fwd = np.tile([1.0, 0, 0], (n, 1)) if fwd is None else np.asarray(fwd, float)
    right = np.tile([0, 1.0, 0], (n, 1)) if right is None else np.asarray(right, float)
    return MetricLog("<mem>", acc, np.asarray(ang, float), fwd, right)


# ------------------------------------------------------------------------------------- merge: DS, SR, order

def test_driving_score_divides_by_220_and_counts_duplicates(tmp_path):
    folder = tmp_path / "eval"
    write_task(folder, "a.json", [record("999", score_route=50.0), record("1000", index=1)])
    write_task(folder, "b.json", [record("999", index=0)])  # a retry left in another task file
    merge = merge_records(load_results(folder, "sorted").records)
    assert merge.eval_num == 3
    assert merge.driving_score == pytest.approx((50.0 + 100.0 + 100.0) / 220)
    assert merge.success_rate == 3 / 220  # both copies of 999 count as successes
    assert merge.n_success == 3


def test_merged_order_is_reverse_string_order_and_stable(tmp_path):
    folder = tmp_path / "eval"
    write_task(folder, "a.json", [record("28330", score_route=10.0), record("999", score_route=20.0, index=1)])
    write_task(folder, "b.json", [record("999", score_route=30.0), record("1000", index=1)])
    merge = merge_records(load_results(folder, ["a.json", "b.json"]).records)
    ids = [(r.route_id, r.score_route) for r in merge.records]
    # '9' > '2' > '1' as strings; equal ids keep reading order (a.json's 999 first).
    assert ids == [("RouteScenario_999_rep0", 20.0), ("RouteScenario_999_rep0", 30.0),
                   ("RouteScenario_28330_rep0", 10.0), ("RouteScenario_1000_rep0", 100)]
    merge_b_first = merge_records(load_results(folder, ["b.json", "a.json"]).records)
    assert merge_b_first.records[0].score_route == 30.0


@pytest.mark.parametrize("status,infractions,expected", [
    ("Completed", {}, True),
    ("Perfect", {"min_speed_infractions": []}, True),
    ("Completed", {"route_timeout": ["Route timeout."]}, False),
    ("Completed", {"outside_route_lanes": ["Agent went outside its route lanes for about 1.0 meters "
                                           "(0.01% of the completed route)"]}, False),
    ("Failed - Agent got blocked", {}, False),
    ("Failed", {}, False),
    ("Completed", {"min_speed_infractions": ["Average speed is 5.0% of the surrounding traffic's one"] * 3}, True),
])
def test_success_rule(tmp_path, status, infractions, expected):
    folder = tmp_path / "eval"
    write_task(folder, "t.json", [record("999", status=status, **infractions)])
    rec = load_results(folder).records[0]
    assert is_success(rec) is expected


def test_score_composed_is_taken_as_written(tmp_path):
    folder = tmp_path / "eval"
    # Unrounded penalty: the written composed differs from route * rounded penalty in the last digits.
    write_task(folder, "t.json", [record("999", score_route=97.15, penalty=0.523456, composed=50.854)])
    assert merge_records(load_results(folder).records).driving_score == 50.854 / 220


# ------------------------------------------------------------------------------------------------ abilities

def _abilities(tmp_path, records, table=None):
    folder = tmp_path / "eval"
    write_task(folder, "t.json", records)
    routes = load_routes(write_routes(tmp_path / "routes.xml"))
    merge = merge_records(load_results(folder).records)
    return compute_abilities(routes, merge.records, table)


def test_ability_uses_first_record_and_drops_missing_routes(tmp_path):
    recs = [record("999", status="Failed - Agent got blocked", score_route=40.0, index=0),
            record("999", index=1),  # same id later in the same file: the tool never looks at it
            record("1000", index=2), record("28330", index=3), record("3000", status="Failed", index=4)]
    ab = _abilities(tmp_path, recs)  # 2050 has no record: not in any denominator
    assert ab.crashed == (("SignalizedJunctionRightTurn", "2050"),)
    assert ab.scores["Overtaking"] == 0.0  # first 999 in merged order is the failed one
    assert ab.scores["Merging"] == 1.0 and ab.totals["Merging"] == 1
    assert ab.scores["Emergency_Brake"] == 0.0
    assert ab.scores["Give_Way"] == 1.0
    assert ab.errors and ab.scores["Traffic_Signs"] is None  # no evaluated Traffic_Signs route
    assert any("ZeroDivisionError" in e.official for e in ab.errors)
    assert ab.mean is None


def _ts_table(count: int, n: int):
    return parse_junction_table({"RouteScenario_2050": {"num_waypoints": n, "first_junction_count": count}},
                                Path("table.json"))


@pytest.mark.parametrize("score_route,extra,expected_credit", [
    (44.0, {}, False),  # 44.0/100 > 11/25 is False in floating point: a tie gives no credit
    (44.01, {}, True),
    (90.0, {"red_light": ["Agent ran a red light 1 at (x=0, y=0, z=0)"]}, False),
    (90.0, {"stop_infraction": ["Agent ran a stop with id=1 at (x=0, y=0, z=0)"]}, False),
    (90.0, {"collisions_vehicle": ["Agent collided against object with type=vehicle.a and id=1 at (x=0)"]}, True),
])
def test_traffic_signs_partial_credit(tmp_path, score_route, extra, expected_credit):
    recs = [record(rid, index=i) for i, (rid, _, _) in enumerate(ROUTES) if rid != "2050"]
    recs.append(record("2050", status="Failed - Agent got blocked", score_route=score_route, index=9, **extra))
    ab = _abilities(tmp_path, recs, _ts_table(3, 25))
    assert ab.defined
    outcome = next(o for o in ab.outcomes if o.route_id == "2050")
    assert outcome.junction_threshold == 11 / 25
    assert outcome.partial_credit is expected_credit
    assert ab.scores["Traffic_Signs"] == (1.0 if expected_credit else 0.0)
    assert ab.scores["Merging"] == 0.5  # partial credit is for Traffic_Signs only
    assert ab.mean == pytest.approx(sum(ab.scores.values()) / 5)


def test_failed_traffic_signs_route_without_junction_is_undefined(tmp_path):
    recs = [record(rid, index=i) for i, (rid, _, _) in enumerate(ROUTES) if rid != "2050"]
    recs.append(record("2050", status="Failed - Agent got blocked", score_route=50.0, index=9))
    table = parse_junction_table({"RouteScenario_2050": {"num_waypoints": 25, "first_junction_count": None}},
                                 Path("t.json"))
    ab = _abilities(tmp_path, recs, table)
    assert ab.scores["Traffic_Signs"] is None and ab.mean is None
    assert ab.scores["Overtaking"] == 1.0
    assert "No junction found in route" in ab.errors[0].official
    no_table = _abilities(tmp_path / "b", recs, None)
    assert "junction table" in no_table.errors[0].reason


def test_junction_table_validation(tmp_path):
    bad = tmp_path / "j.json"
    bad.write_text(json.dumps({"RouteScenario_1": {"num_waypoints": 10, "first_junction_count": 3,
                                                   "junction_completion": 0.5}}))
    with pytest.raises(Bench2DriveInputError, match=r"j\.json.*junction_completion"):
        load_junction_table(bad)
    bad.write_text(json.dumps({"RouteScenario_1": {"num_waypoints": 0, "first_junction_count": 3}}))
    with pytest.raises(Bench2DriveInputError, match="num_waypoints"):
        load_junction_table(bad)
    bad.write_text("{not json")
    with pytest.raises(Bench2DriveInputError, match="malformed JSON"):
        load_junction_table(bad)
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps({"7": {"junction_completion": 0.25}}))
    assert load_junction_table(ok)["7"].threshold() == 0.25


# ----------------------------------------------------------------------------------------------- efficiency

def test_efficiency_regex_quirks():
    msgs = [f"Average speed is {v}% of the surrounding traffic's one" for v in ("1000.0", "1000.01", "2.5e+16",
                                                                                 "0.0", "100", "-5.0")]
    vals = parse_min_speed(msgs)
    assert [v.parsed for v in vals] == [1000.0, 1000.01, 16.0, 0.0, 100.0, 5.0]
    assert [v.kept for v in vals] == [True, False, True, True, True, True]
    assert [v.written for v in vals] == [1000.0, 1000.01, 2.5e16, 0.0, 100.0, -5.0]


def test_efficiency_is_mean_of_per_record_means_excluding_silent_records(tmp_path):
    msg = "Average speed is {}% of the surrounding traffic's one".format
    recs = [record("999", min_speed_infractions=[msg(50), msg(100)]),
            record("1000", index=1, min_speed_infractions=[msg(90), msg(5000)]),
            record("28330", status="Perfect", index=2)]
    folder = tmp_path / "eval"
    write_task(folder, "t.json", recs)
    eff = compute_efficiency(merge_records(load_results(folder).records).records)
    assert eff.value == pytest.approx((75.0 + 90.0) / 2)
    assert not eff.errors


def test_efficiency_undefined_cases(tmp_path):
    msg = "Average speed is {}% of the surrounding traffic's one".format
    folder = tmp_path / "eval"
    write_task(folder, "t.json", [record("999", min_speed_infractions=[msg(5000), msg(1000.5)]),
                                  record("1000", index=1, min_speed_infractions=[msg(80)])])
    eff = compute_efficiency(load_results(folder).records)
    assert eff.value is None and "ZeroDivisionError" in eff.errors[0].official
    assert eff.per_record[1].value == 80.0  # the other record keeps its value
    write_task(folder, "t.json", [record("999", status="Perfect")])
    assert compute_efficiency(load_results(folder).records).value is None


# ------------------------------------------------------------------------------------------------- comfort

def test_phase_unwrap_folds_two_pi_steps_per_chunk():
    x = np.array([0.0] * 10 + [6.3] * 10)
    out = phase_unwrap(x)
    assert np.allclose(out[10:], 6.3 - 2 * np.pi)
    assert np.array_equal(phase_unwrap(np.full(5, 3.0)), np.full(5, 3.0))
    ramp = np.linspace(0, 6.3, 20)  # small steps: nothing folded
    assert np.array_equal(phase_unwrap(ramp), ramp)


def test_chunking_rules():
    assert chunk_bounds(20) == [(0, 20)]
    assert chunk_bounds(21) == [(0, 20)]
    assert chunk_bounds(40) == [(0, 20), (20, 40)]
    assert chunk_bounds(59) == [(0, 20), (20, 40)]
    assert chunk_bounds(5) == [(0, 5)]


def test_yaw_rate_is_compared_in_deg_per_s_against_rad_bounds():
    n = 40
    zeros = np.zeros((n, 3))
    steady = lambda rate: np.column_stack([np.zeros(n), np.zeros(n), np.full(n, rate)])  # noqa: E731
    scores = route_smoothness_many([make_log(zeros, steady(0.5)), make_log(zeros, steady(2.0)),
                                    make_log(zeros, steady(np.radians(2.0)))])
    assert scores == [1.0, 0.0, 1.0]


def test_short_logs_are_judged_whole_and_tiny_logs_are_undefined():
    ok3 = make_log(np.zeros((3, 3)), np.zeros((3, 3)))
    bad = make_log(np.zeros((21, 3)), np.column_stack([np.zeros((21, 2)), np.r_[np.zeros(20), 5.0]]))
    two = make_log(np.zeros((2, 3)), np.zeros((2, 3)))
    assert route_smoothness_many([ok3, bad, two, None]) == [1.0, 1.0, None, None]  # step 21 is discarded


def _reference_chunk_pass(acc, ang, fwd, right) -> bool:
    """Straightforward per-chunk transcription of the official formula (one scipy call per series)."""
    w = min(7, len(acc))
    sg = lambda x: savgol_filter(x, window_length=w, polyorder=2)  # noqa: E731
    dsg = lambda x: savgol_filter(x, window_length=w, polyorder=2, deriv=1, delta=0.1)  # noqa: E731
    a2 = acc[:, :2]
    yr = ang[:, 2].copy()
    adj = np.zeros_like(yr)
    adj[1:] = np.cumsum(np.round(np.diff(yr) / (2 * np.pi)))
    yr = yr - 2 * np.pi * adj
    lon = sg(np.einsum("ij,ij->i", a2, fwd[:, :2]))
    lat = sg(np.einsum("ij,ij->i", a2, right[:, :2]))
    mag = sg(np.hypot(a2[:, 0], a2[:, 1]))
    yaw = sg(yr)
    return bool(np.all((lon > -4.05) & (lon < 2.40)) and np.all(np.abs(lat) < 4.89)
                and np.all(np.abs(dsg(mag)) < 8.37) and np.all(np.abs(dsg(lon)) < 4.13)
                and np.all(np.abs(yaw) < 1.93) and np.all(np.abs(yaw) < 0.95))


def test_batched_comfort_equals_per_chunk_reference():
    rng = np.random.default_rng(7)
    c, length = 400, 20
    acc = rng.normal(0, 1.2, (c, length, 3))
    ang = rng.normal(0, 0.4, (c, length, 3))
    heading = rng.uniform(-np.pi, np.pi, (c, length))
    fwd = np.stack([np.cos(heading), np.sin(heading), np.zeros_like(heading)], -1)
    right = np.stack([-np.sin(heading), np.cos(heading), np.zeros_like(heading)], -1)
    ours = chunks_pass(acc, ang, fwd, right)
    ref = np.array([_reference_chunk_pass(acc[i], ang[i], fwd[i], right[i]) for i in range(c)])
    assert 0 < ref.sum() < c  # the sample exercises both outcomes
    assert np.array_equal(ours, ref)


# --------------------------------------------------------------------------------------------- input errors

def test_malformed_checkpoint_names_the_file(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "broken.json").write_text('{"_checkpoint": {"records": [')
    with pytest.raises(Bench2DriveInputError, match=r"broken\.json: malformed JSON"):
        load_results(folder)


@pytest.mark.parametrize("mutate,field", [
    (lambda r: r.pop("route_id"), r"records\[0\]\.route_id"),
    (lambda r: r["scores"].pop("score_composed"), r"records\[0\]\.scores\.score_composed"),
    (lambda r: r["scores"].update(score_composed="high"), r"score_composed.*expected a number"),
    (lambda r: r["scores"].update(score_route=float("nan")), r"score_route.*finite"),
    (lambda r: r.pop("index"), r"records\[0\]\.index"),
    (lambda r: r["infractions"].pop("red_light"), r"infractions\.red_light"),
    (lambda r: r["infractions"].update(collisions_layout="x"), r"infractions\.collisions_layout"),
    (lambda r: r.update(route_id="Route"), r"route_id.*RouteScenario_"),
])
def test_missing_or_bad_fields_name_file_and_field(tmp_path, mutate, field):
    rec = record("999")
    mutate(rec)
    write_task(tmp_path / "eval", "task_3.json", [rec])
    with pytest.raises(Bench2DriveInputError, match=rf"task_3\.json.*{field}"):
        load_results(tmp_path / "eval")


def test_unknown_route_id_is_an_input_error(tmp_path):
    write_task(tmp_path / "eval", "t.json", [record("999"), record("424242", index=1)])
    routes = write_routes(tmp_path / "routes.xml")
    with pytest.raises(Bench2DriveInputError, match=r"t\.json.*records\[1\]\.route_id.*RouteScenario_424242"):
        score_results(tmp_path / "eval", routes)


def test_routes_xml_errors(tmp_path):
    p = tmp_path / "r.xml"
    p.write_text("<routes><route id='1'><scenarios/></route></routes>")
    with pytest.raises(Bench2DriveInputError, match="town"):
        load_routes(p)
    p.write_text("<routes><route id='1' town='T'><scenarios/></route></routes>")
    with pytest.raises(Bench2DriveInputError, match="scenario"):
        load_routes(p)
    p.write_text("<routes>")
    with pytest.raises(Bench2DriveInputError, match="r.xml"):
        load_routes(p)


def test_metric_log_errors_name_step_and_field(tmp_path):
    steps = metric_steps(5)
    del steps["3"]["rotation"]
    p = tmp_path / "metric_info.json"
    p.write_text(json.dumps(steps))
    with pytest.raises(Bench2DriveInputError, match=r"metric_info\.json: field '3\.rotation'"):
        load_metric_log(p)
    steps = metric_steps(5)
    steps["2"]["acceleration"] = [1.0, "x", 0.0]
    p.write_text(json.dumps(steps))
    with pytest.raises(Bench2DriveInputError, match=r"'2\.acceleration'"):
        load_metric_log(p)


def test_official_outputs_in_the_results_folder_are_handled(tmp_path):
    folder = tmp_path / "eval"
    write_task(folder, "t.json", [record("999")])
    (folder / "merged.json").write_text(json.dumps({"_checkpoint": {"records": []}}))
    (folder / "merged_ability.json").write_text(json.dumps(
        {"Overtaking": 0, "Merging": 0, "Emergency_Brake": 0, "Give_Way": 0, "Traffic_Signs": 0, "mean": 0,
         "crashed": []}))
    rs = load_results(folder)
    assert rs.file_names == ("t.json",)
    skipped = {s.name: s.official for s in rs.skipped}
    assert "KeyError" in skipped["merged_ability.json"]
    assert "skipped" in skipped["merged.json"]
    with pytest.raises(Bench2DriveInputError, match="no such checkpoint"):
        load_results(folder, ["nope.json"])


# ------------------------------------------------------------------------------------------ whole pipeline

def test_score_results_end_to_end_with_metric_logs(tmp_path):
    recs = [record(rid, index=i) for i, (rid, _, _) in enumerate(ROUTES)]
    folder = tmp_path / "eval"
    write_task(folder, "t.json", recs)
    metric = tmp_path / "metric"
    for i, rec in enumerate(recs):
        write_metric(metric, rec, metric_steps(40, yaw_rate=0.5 if i % 2 else 2.0))
    (metric / "RouteScenario_999_rep0_old_attempt").mkdir()
    report = score_results(folder, write_routes(tmp_path / "routes.xml"), metric_dir=metric, strict=True)
    assert report.complete
    assert report.smoothness.value == pytest.approx(2 / 5)
    assert report.efficiency.value == pytest.approx(80.5)
    out = report_json(report)
    assert out["readme"]["success_rate"] == pytest.approx(500 / 220)
    assert out["abilities"]["mean"] == 1.0
    assert len(out["routes"]) == 5
    kinds = {f["kind"]: f for f in out["findings"]}
    assert kinds["superseded_attempts"]["items"] == ["RouteScenario_999_rep0_old_attempt"]
    assert "fixed_divisor" in kinds
    json.dumps(out)  # serialisable


def test_missing_metric_log_leaves_other_metrics_defined(tmp_path):
    recs = [record(rid, index=i) for i, (rid, _, _) in enumerate(ROUTES)]
    write_task(tmp_path / "eval", "t.json", recs)
    metric = tmp_path / "metric"
    for rec in recs[1:]:
        write_metric(metric, rec, metric_steps(25))
    report = score_results(tmp_path / "eval", write_routes(tmp_path / "routes.xml"), metric_dir=metric)
    assert report.smoothness.value is None
    assert isinstance(report.smoothness.errors[0], MetricUndefined)
    assert "FileNotFoundError" in report.smoothness.errors[0].official
    assert report.efficiency.value is not None and report.merge.driving_score > 0
    assert report.smoothness.per_record[1:] == (1.0,) * 4
