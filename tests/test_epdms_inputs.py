"""Bad input gets a clear error naming the file and the field; nothing is half-written."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from irlvla_bench.cli import app
from irlvla_bench.errors import InputError
from irlvla_bench.examples import make_case
from irlvla_bench.io.scoring_case import parse_case, parse_group


@pytest.fixture(scope="module")
def case_dict():
    return make_case("lead", seed=3)


def _expect(data, field_fragment, parser=parse_case):
    with pytest.raises(InputError) as info:
        parser(data, source="bad.json")
    message = str(info.value)
    assert message.startswith("bad.json: "), message
    assert field_fragment in message, message
    return message


def test_missing_field(case_dict):
    data = copy.deepcopy(case_dict)
    del data["centerline"]
    assert "missing field" in _expect(data, "centerline")


def test_seven_poses_instead_of_eight(case_dict):
    data = copy.deepcopy(case_dict)
    data["proposals"][2]["poses"] = data["proposals"][2]["poses"][:7]
    assert "(8, 3)" in _expect(data, "proposals[2].poses")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_pose(case_dict, bad):
    data = copy.deepcopy(case_dict)
    data["proposals"][1]["poses"][4][1] = bad
    assert "non-finite" in _expect(data, "proposals[1].poses")


def test_unknown_map_layer(case_dict):
    data = copy.deepcopy(case_dict)
    data["map"]["objects"][0]["layer"] = "lane_group_connector"
    assert "unknown map layer" in _expect(data, "map.objects[0].layer")


def test_duplicate_tokens(case_dict):
    data = copy.deepcopy(case_dict)
    data["proposals"][1]["id"] = data["proposals"][0]["id"]
    assert "duplicate proposal id" in _expect(data, "proposals[1].id")
    data = copy.deepcopy(case_dict)
    data["tracked_objects"][5].append(copy.deepcopy(data["tracked_objects"][5][0]))
    assert "duplicate track token" in _expect(data, "tracked_objects[5][1].token")


def test_no_proposals(case_dict):
    data = copy.deepcopy(case_dict)
    data["proposals"] = []
    assert "no proposals" in _expect(data, "proposals")


def test_synthetic_scene_must_not_carry_a_human_future(case_dict):
    data = copy.deepcopy(case_dict)
    data["scene_type"] = "synthetic"
    _expect(data, "human_future")


def test_reserved_red_light_token(case_dict):
    data = copy.deepcopy(case_dict)
    data["tracked_objects"][0][0]["token"] = "my_red_light_car"
    _expect(data, "tracked_objects[0][0].token")


def _group(case_dict, prev_offset_us):
    now = copy.deepcopy(case_dict)
    prev = copy.deepcopy(case_dict)
    prev["token"] = "a" * 16
    prev["time_us"] = now["time_us"] - prev_offset_us
    return {"schema": "navsim-scene-group/v1", "group_id": "g",
            "mappings": [{"now": now["token"], "prev": prev["token"], "second_stage": []}], "frames": [now, prev]}


def test_group_naming_a_missing_token(case_dict):
    data = _group(case_dict, 500_000)
    data["mappings"][0]["prev"] = "missing_token"
    assert "not among the group's frames" in _expect(data, "mappings[0]", parser=parse_group)


@pytest.mark.parametrize("offset_us", [0, 560_000, 900_000, -100_000])
def test_group_prev_frame_outside_window(case_dict, offset_us):
    assert "0 < dt < 0.55" in _expect(_group(case_dict, offset_us), "mappings[0]", parser=parse_group)


def test_group_duplicate_frame_tokens(case_dict):
    data = _group(case_dict, 500_000)
    data["frames"][1]["token"] = data["frames"][0]["token"]
    _expect(data, "frames[1].token", parser=parse_group)


def test_cli_reports_bad_file_and_writes_nothing(tmp_path, case_dict):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(case_dict))
    broken = copy.deepcopy(case_dict)
    broken["proposals"][0]["poses"][0][0] = None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(broken))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["score", str(good), str(bad), "--out-dir", str(out), "--quiet"])
    assert result.exit_code == 2
    assert "bad.json" in result.output and "proposals[0].poses" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_cli_rejects_truncated_json(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"schema": "navsim-scoring-case/v1", "token": ')
    result = CliRunner().invoke(app, ["score", str(path), "--quiet"])
    assert result.exit_code == 2 and "cut.json" in result.output and "invalid JSON" in result.output


def test_duplicate_centerline_points_are_allowed(case_dict):
    """scoring-case.md allows consecutive duplicate centerline points (NAVSIM has them at lane joints)."""
    from evaluators.epdms import score_case

    data = copy.deepcopy(case_dict)
    line = data["centerline"]
    data["centerline"] = line[:10] + [line[9], line[9]] + line[10:]
    with_duplicates = score_case(parse_case(data), mode="labelling")
    plain = score_case(parse_case(case_dict), mode="labelling")
    assert (with_duplicates["score_single_frame"].to_numpy() == plain["score_single_frame"].to_numpy()).all()
