"""The EPDMS evaluator with NAVSIM's reactive IDM traffic against NAVSIM's own results
(``../shared/golden/epdms/**/*.result.idm.json.gz``), plus the IDM policy's input errors and CLI.

Known NAVSIM floating-point knife edges are listed in KNOWN_KNIFE_EDGES with the reason; they are checked to
still be the only deviations (a listed case that starts matching, or a new deviation, fails the suite).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import GOLDEN_EPDMS, golden_inputs, require_golden
from golden_checks import case_errors, gold_path, group_failures, score_golden_groups
from evaluators.epdms import SUB_METRICS, score_frame
from evaluators.epdms.config import NAVSIM_V2
from evaluators.epdms.scene import prepare_scene
from evaluators.epdms.traffic.idm import prepare_idm_scene
from irlvla_bench.cli import app
from irlvla_bench.errors import InputError
from irlvla_bench.examples import make_case
from irlvla_bench.io.scoring_case import parse_case
from irlvla_bench.types import MapLayer


# NAVSIM's result at exact ties depends on the last bits of its arithmetic, which depend on its NumPy build
# (numpy 1.23's SVML trigonometry; README "Known limits"); our ego states are 1e-11 m from NAVSIM's, so these
# ties can fall the other way. Each was checked: 1e-11 m of noise on
# the ego position flips the decision in 12-16 % of draws. TTC ties: an IDM agent drives exactly on the ego's
# heading line (both on the lane centre), NAVSIM takes arccos of a dot product that rounds to 1 + 2^-52 (NaN:
# the agent is dropped) or to 1 (the agent is ahead). DDC ties: the ego drives exactly on a lane border (the
# same two frames deviate with log replay).
KNOWN_KNIFE_EDGES = {
    "038_human_fails_ttc": "TTC of 'accel' and 'fast': the IDM lead is exactly ahead on the heading line",
    "032_rear": "unfiltered TTC of 'still', 'brake_hard_rear', 'decel': the IDM tailgater is exactly on the "
                "heading line; the human filter overrides TTC, so only pdm_score (computed before the filter, "
                "as NAVSIM does) and the override list differ",
    "group_02_lead": "TTC of frame a00ff2f3eb3ce8b0f (agent 1, lead on the heading line) and DDC of two frames "
                     "of agent 2 (ego on a lane border, as with log replay)",
    "dataset_public": "pools group_02_lead",
}
# What a tie may change: the tied metric and what NAVSIM derives from it.
TIE_FIELDS = ("time_to_collision_within_bound", "driving_direction_compliance", "multiplicative_metrics_prod",
              "weighted_part_single_frame", "score_single_frame", "pdm_score", "human_filter_overrides", "score")


@pytest.mark.golden
@pytest.mark.parametrize("path", golden_inputs("single"), ids=lambda p: p.name.split(".")[0])
def test_single_case_matches_navsim_idm(path):
    require_golden()
    if not gold_path(path, "idm").exists():
        pytest.skip(f"no IDM result for {path.name}")
    errors = case_errors(path, "idm")
    stem = path.name.split(".")[0]
    if stem in KNOWN_KNIFE_EDGES:
        assert errors, f"{stem} now matches NAVSIM exactly: remove it from KNOWN_KNIFE_EDGES"
        assert all(any(f in e for f in TIE_FIELDS[:1] + TIE_FIELDS[3:]) for e in errors), errors
        pytest.xfail(f"NAVSIM floating-point tie ({KNOWN_KNIFE_EDGES[stem]}): {errors[:2]}")
    assert not errors, "\n".join(errors[:20])


@pytest.mark.golden
@pytest.mark.parametrize("stem", ["008_lead_moving", "027_intersection_cross", "030_lateral", "053_ttc_near_miss"])
def test_submission_mode_matches_navsim_idm(stem):
    """Each proposal as its own submission (its own reactive rollout, the reference against it)."""
    require_golden()
    assert not case_errors(GOLDEN_EPDMS / "single" / f"{stem}.json.gz", "idm", mode="submission")


@pytest.fixture(scope="module")
def golden_groups():
    require_golden()
    return score_golden_groups("idm")


@pytest.mark.golden
def test_groups_and_dataset_match_navsim_idm(golden_groups):
    failures = group_failures(golden_groups, "idm")
    unexpected = {k: v for k, v in failures.items() if k not in KNOWN_KNIFE_EDGES}
    assert not unexpected, unexpected
    fixed = set(KNOWN_KNIFE_EDGES) - {p.name.split(".")[0] for p in golden_inputs("single")} - set(failures)
    assert not fixed, f"{sorted(fixed)} now match NAVSIM exactly: remove them from KNOWN_KNIFE_EDGES"
    # The knife-edge groups deviate only in the tied TTC / DDC of a few frames and what aggregates them, never
    # in the simulated states, the extended comfort or the weights.
    for errors in failures.values():
        assert all(".two_frame_extended_comfort" not in e and ".weight" not in e and "simulated_states" not in e
                   for e in errors), errors
        assert all(any(f in e for f in TIE_FIELDS) or " mapping " in e or " summary " in e for e in errors), errors


# ----------------------------------------------------------------------------------------------------------------
# Geometry against shapely (what NAVSIM's agents use)


def _lane_like_paths(rng):
    """Arcs of gentle and tight bends, straight lines with float noise, winding walks; at UTM-like offsets."""
    offset = np.array([664000.3, 3997000.7])
    for _ in range(12):
        n = int(rng.integers(3, 40))
        radius = rng.uniform(4.0, 3000.0) * rng.choice([-1.0, 1.0])
        spacing = rng.uniform(0.3, 1.0)
        angle = np.arange(n) * spacing / radius
        yield np.stack([radius * np.sin(angle), radius * (1 - np.cos(angle))], -1) + offset
        heading = rng.uniform(-np.pi, np.pi)
        yield np.stack([np.arange(n) * np.cos(heading), np.arange(n) * np.sin(heading)], -1) + offset
        turns = np.cumsum(rng.normal(0.0, 0.1, n))
        steps = rng.uniform(0.5, 2.0, (n, 1))
        yield np.cumsum(np.stack([np.cos(turns), np.sin(turns)], -1) * steps, 0) + offset


def test_buffer_pieces_cover_exactly_what_shapely_buffers():
    shapely = pytest.importorskip("shapely")
    from shapely.ops import unary_union

    from evaluators.epdms.traffic.idm_geometry import max_fan_points, path_buffer_pieces

    config = NAVSIM_V2.idm
    rng = np.random.default_rng(7)
    for xy in _lane_like_paths(rng):
        half_width = rng.uniform(0.8, 1.2)
        k = len(xy)
        quads = np.empty((k - 1, 4, 2))
        fans = np.zeros((k, max_fan_points(config.buffer_quadrant_segments), 2))
        fan_n = np.zeros(k, dtype=np.int64)
        cut = np.zeros(k, dtype=np.int64)
        turn = np.zeros(k, dtype=np.int64)
        path_buffer_pieces(xy, half_width, config.buffer_quadrant_segments, config.buffer_separation_factor,
                           config.buffer_vertex_snap_factor, quads, fans, fan_n, cut, turn)
        pieces = [shapely.Polygon(q) for q in quads] + [shapely.Polygon(fans[i, :fan_n[i]]) for i in range(k)
                                                          if fan_n[i] >= 3]
        ours = unary_union(pieces)
        theirs = shapely.LineString(xy).buffer(half_width, cap_style="flat")
        assert ours.symmetric_difference(theirs).area < 1e-7, (k, half_width)


def test_baseline_projection_and_interpolation_match_shapely():
    shapely = pytest.importorskip("shapely")
    from evaluators.epdms.traffic.idm_geometry import nearest_pose, polyline_interpolate, polyline_project

    rng = np.random.default_rng(3)
    for xy in _lane_like_paths(rng):
        line = shapely.LineString(xy)
        for px, py in xy[rng.integers(0, len(xy), 5)] + rng.normal(0.0, 2.0, (5, 2)):
            s = polyline_project(xy, px, py)
            assert s == pytest.approx(line.project(shapely.Point(px, py)), abs=1e-9)
            for at in (s, s + 0.5, line.length + 1.0, -0.3):
                point = line.interpolate(at)
                assert polyline_interpolate(xy, at) == pytest.approx((point.x, point.y), abs=1e-9)
            x, y, heading, _ = nearest_pose(xy, px, py, 0.5)
            ahead = line.interpolate(s + 0.5)
            if (ahead.x, ahead.y) != (x, y):
                assert heading == pytest.approx(np.arctan2(ahead.y - y, ahead.x - x), abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Inputs, policy selection, CLI


def _lead_case():
    return parse_case(make_case("lead", seed=3))


def test_missing_baseline_is_an_input_error_naming_the_field():
    case = _lead_case()
    index = next(i for i, o in enumerate(case.map_objects) if o.layer in (MapLayer.LANE, MapLayer.LANE_CONNECTOR))
    objects = list(case.map_objects)
    objects[index] = dataclasses.replace(objects[index], baseline=None)
    broken = dataclasses.replace(case, map_objects=tuple(objects))
    with pytest.raises(InputError) as info:
        score_frame(broken, traffic="idm")
    assert info.value.field == f"map.objects[{index}].baseline"
    assert "baseline" in str(info.value) and objects[index].id in str(info.value)
    score_frame(broken, traffic="log_replay")  # log replay never needs baselines


def test_reactive_rows_are_independent_and_modes_agree():
    case = _lead_case()
    labelling = score_frame(case, traffic="idm", mode="labelling")
    submission = score_frame(case, traffic="idm", mode="submission")
    for name in SUB_METRICS:
        np.testing.assert_array_equal(labelling.metrics[name], submission.metrics[name])
    np.testing.assert_array_equal(labelling.normalizer_m, submission.normalizer_m)


def test_labelling_batches_of_reactive_rows_change_nothing(monkeypatch):
    from evaluators.epdms import score as score_module

    case = _lead_case()
    whole = score_frame(case, traffic="idm", mode="labelling")
    monkeypatch.setattr(score_module, "REACTIVE_ROWS_PER_BATCH", 2)
    batched = score_frame(case, traffic="idm", mode="labelling")
    for name in SUB_METRICS:
        np.testing.assert_array_equal(whole.metrics[name], batched.metrics[name])
    np.testing.assert_array_equal(whole.score_single_frame, batched.score_single_frame)


def test_idm_scene_snaps_the_lead_vehicle():
    case = _lead_case()
    idm = prepare_idm_scene(prepare_scene(case, NAVSIM_V2), NAVSIM_V2.idm)
    assert len(idm.agent_columns) + len(idm.parked_columns) >= 1


def test_cli_scores_with_idm_traffic(tmp_path):
    case_path = tmp_path / "lead.json"
    case_path.write_text(json.dumps(make_case("lead", seed=3)))
    result = CliRunner().invoke(app, ["score", str(case_path), "--out-dir", str(tmp_path / "out"), "--traffic", "idm",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "out" / "lead.result.json").read_text())
    assert document["policy"] == "idm"
    expected = score_frame(parse_case(make_case("lead", seed=3)), traffic="idm")
    np.testing.assert_allclose([p["score_single_frame"] for p in document["proposals"]],
                               expected.score_single_frame, rtol=0, atol=1e-12)


def test_cli_reports_missing_baseline(tmp_path):
    raw = make_case("lead", seed=3)
    index = next(i for i, o in enumerate(raw["map"]["objects"]) if o["layer"] in ("lane", "lane_connector"))
    del raw["map"]["objects"][index]["baseline"]
    case_path = tmp_path / "nobaseline.json"
    case_path.write_text(json.dumps(raw))
    result = CliRunner().invoke(app, ["score", str(case_path), "--out-dir", str(tmp_path / "out"), "--traffic", "idm",
                                      "--quiet"])
    assert result.exit_code != 0
    assert f"map.objects[{index}].baseline" in result.output
    assert not (tmp_path / "out" / "nobaseline.result.json").exists()
