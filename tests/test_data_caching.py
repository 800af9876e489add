"""Metric caching: scene frame -> scoring case (route, centerline, objects, lights, human past/future, PDM-Closed),
resumable runs, two-stage groups, and the round trip through the EPDMS evaluator when it is available."""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import replace

import numpy as np
import pytest
import shapely
from test_data_fixtures import cached_split, tiny_world

from irlvla_bench.caching import cache_split, load_cached_cases, load_cached_groups
from irlvla_bench.caching.objects import interpolate_objects, red_connectors_per_frame
from irlvla_bench.caching.pdm_closed import (
    NAVSIM_PDM_CLOSED,
    PDMPath,
    ProposalGenerator,
    build_forecast,
    geometric_selector,
)
from irlvla_bench.caching.route import correct_route, route_lane_ids
from irlvla_bench.caching.scene import SceneData
from irlvla_bench.io.navsim_logs import LogFrame
from irlvla_bench.io.nuplan_map import load_map
from irlvla_bench.types import PACIFICA, Proposals

LOCATION = "us-nv-las-vegas-strip"


def _all_cases():
    return load_cached_cases(cached_split("navtest")[0]) + load_cached_cases(cached_split("navhard_two_stage")[0])


def test_every_scene_of_both_splits_is_cached():
    _, world = tiny_world()
    one_dir, one = cached_split("navtest")
    two_dir, two = cached_split("navhard_two_stage")
    assert one.failed == 0 and one.cached == world.one_stage_scenes
    assert two.failed == 0 and two.cached == 2 * world.two_stage_mappings + world.synthetic_scenes
    assert two.groups == world.two_stage_mappings
    assert not list(one_dir.rglob("*.tmp")) and not list(two_dir.rglob("*.tmp"))


def test_cases_carry_consistent_metric_cache_content():
    root, _ = tiny_world()
    nmap = load_map(root / "maps", LOCATION)
    for case in _all_cases():
        ego = case.ego.rear_axle
        assert case.tracked_objects.num_frames == 41 and len(case.red_lane_connectors) == 41
        # Only on-route connectors' red lights are kept, the way NAVSIM builds red-light polygons.
        red_all = set().union(*case.red_lane_connectors)
        assert all(nmap.lanes[c].is_connector for c in red_all)
        # The centerline starts on a route lane next to the ego and follows the lane graph.
        assert np.hypot(*(case.centerline[:, :2] - ego[:2]).T).min() < 3.0
        assert case.route_lane_ids and set(case.route_lane_ids) <= set(nmap.lanes)
        # Map objects: the PDM drivable map (roadblocks, lanes, connectors, junctions, car parks) within 100 m.
        layers = {o.layer.name.lower() for o in case.map_objects}
        assert layers <= {"roadblock", "lane", "lane_connector", "intersection", "carpark_area"}
        centre = ego[:2] + PACIFICA.rear_axle_to_center * np.array([np.cos(ego[2]), np.sin(ego[2])])
        patch = shapely.box(*(centre - 100), *(centre + 100))
        assert all(shapely.Polygon(o.polygon).intersects(patch) for o in case.map_objects if o.layer.name == "ROADBLOCK")
        # PDM-Closed: 5 s at 10 Hz from the ego pose.
        assert case.pdm_reference.shape == (51, 3) and np.allclose(case.pdm_reference[0, :2], ego[:2], atol=1.0)
        assert case.human_past[-1].time_us == case.time_us
        assert np.allclose(case.human_past[-1].rear_axle, ego)
        if case.is_original:
            assert case.human_future.shape == (8, 3)
        else:
            assert case.human_future is None and len(case.token) == 17


def test_human_future_matches_the_log():
    from irlvla_bench.io.navsim_logs import read_log

    root, _ = tiny_world()
    case = load_cached_cases(cached_split("navtest")[0])[0]
    frames = {f.token: (i, f) for i, f in enumerate(read_log(root / "navsim_logs" / "test" / f"{case.log_name}.pkl"))}
    i, cur = frames[case.token]
    later = [f for f in read_log(root / "navsim_logs" / "test" / f"{case.log_name}.pkl")][i + 1:i + 9]
    c, s = np.cos(cur.ego_pose[2]), np.sin(cur.ego_pose[2])
    for pose, frame in zip(case.human_future, later):
        d = frame.ego_pose[:2] - cur.ego_pose[:2]
        assert pose[:2] == pytest.approx([c * d[0] + s * d[1], -s * d[0] + c * d[1]], abs=1e-9)


def _frame(t_us: int, tokens, names, boxes, vels, lights=()):
    return LogFrame(token=f"{t_us:016x}", timestamp_us=t_us, log_name="log", map_location=LOCATION, roadblock_ids=("1",),
                    traffic_lights=tuple(lights), ego_pose=np.zeros(3), ego_velocity=np.zeros(2),
                    ego_acceleration=np.zeros(2), driving_command=np.array([0, 1, 0, 0]), track_tokens=tuple(tokens),
                    names=tuple(names), boxes=np.asarray(boxes, float).reshape(-1, 6),
                    velocities=np.asarray(vels, float).reshape(-1, 2), instance_tokens=tuple(tokens))


def test_objects_interpolated_2hz_to_10hz_with_navsim_rules():
    frames = []
    for k in range(12):  # 4 history + 8 future key frames
        it = k - 3
        toks, names, boxes, vels = [], [], [], []
        if 0 <= it <= 4:  # a car seen from t = 0 to 2 s, moving 5 m/s along x and turning
            toks.append("car")
            names.append("vehicle")
            boxes.append([5.0 * 0.5 * it, 0.0, 0.1 * it, 4.5, 2.0, 1.6])
            vels.append([5.0, 0.0])
        if it == 6:  # a cone seen only at t = 3 s: NAVSIM repeats it in every frame
            toks.append("cone")
            names.append("traffic_cone")
            boxes.append([30.0, 1.0, 0.0, 0.4, 0.4, 0.7])
            vels.append([1.0, 1.0])
        lights = [("77", it >= 2)]
        frames.append(_frame(1_000_000 + k * 500_000, toks, names, boxes, vels, lights))
    scene = SceneData("a" * 16, "log", LOCATION, tuple(frames), 4)
    out = interpolate_objects(scene)
    by_frame = [{o["token"]: o for o in f} for f in out]
    assert by_frame[3]["car"]["box"][:3] == pytest.approx([1.5, 0.0, 0.06])  # 2.5 m and 0.1 rad per key frame
    assert "car" in by_frame[20] and "car" not in by_frame[21]  # exists only up to its last key frame
    assert all(by_frame[f]["cone"]["box"][:2] == [30.0, 1.0] for f in range(41))
    assert by_frame[0]["cone"]["velocity"] == [0.0, 0.0]  # static objects carry no velocity
    red = red_connectors_per_frame(scene, {"77"})
    assert [bool(r) for r in red[:12]] == [False] * 10 + [True] * 2 and red[40] == ["77"]
    assert red_connectors_per_frame(scene, set())[40] == []


def test_route_correction_inserts_missing_connector_and_prepends_current_block():
    root, _ = tiny_world()
    nmap = load_map(root / "maps", LOCATION)
    connector = next(b for b in nmap.blocks.values() if b.is_connector)
    before, after = connector.incoming[0], connector.outgoing[0]
    lane = nmap.lanes[nmap.blocks[before].lane_ids[0]]
    pose = lane.baseline[len(lane.baseline) // 2]
    # Fix 2: the route skips the roadblock connector between two roadblocks.
    fixed = correct_route(nmap, pose, [before, after])
    assert fixed[0] == before and fixed[-1] == after and len(fixed) == 3
    assert nmap.blocks[fixed[1]].is_connector and fixed[1] in nmap.blocks[before].outgoing
    # Fix 1: the route starts one block ahead of the ego.
    fixed = correct_route(nmap, pose, [connector.id, after])
    assert fixed[:2] == [before, connector.id]
    assert set(route_lane_ids(nmap, fixed)) >= set(nmap.blocks[before].lane_ids)


def test_pdm_proposals_stop_behind_obstacle_and_red_light():
    root, _ = tiny_world()
    nmap = load_map(root / "maps", LOCATION)
    lane = max((l for l in nmap.lanes.values() if not l.is_connector), key=lambda l: l.length)
    line = lane.baseline
    ego = line[2].copy()
    path = PDMPath(line)
    obstacle_s = path.project(*ego[:2]) + 40.0
    ox, oy, oh = path.interpolate([obstacle_s])[0]
    objects = [{"token": "box", "type": "generic_object", "box": [ox, oy, oh, 1.0, 1.0, 1.0], "velocity": [0.0, 0.0]}]
    gen = ProposalGenerator(NAVSIM_PDM_CLOSED)
    centre = ego[:2] + PACIFICA.rear_axle_to_center * np.array([np.cos(ego[2]), np.sin(ego[2])])
    free = gen.generate(ego, 10.0, line, 15.0, build_forecast([], centre, {}, NAVSIM_PDM_CLOSED, 50))
    assert free.idm[4, 40, 0] - free.idm[4, 0, 0] > 40.0
    assert free.states.shape == (15, 51, 3)
    for objs, reds in ((objects, {}), ([], {"red": shapely.Point(ox, oy).buffer(2.0)})):
        forecast = build_forecast(objs, centre, reds, NAVSIM_PDM_CLOSED, 50)
        props = gen.generate(ego, 10.0, line, 15.0, forecast)
        front = props.idm[:5, :41, 0] + PACIFICA.front_length  # progress is the rear axle's
        assert np.all(front < obstacle_s - 0.5), "an IDM proposal ran into the obstacle"
        assert props.idm[4, 40, 1] < free.idm[4, 40, 1] - 5.0  # the fastest policy brakes for it
        assert np.all(np.diff(props.idm[4, 20:41, 1]) <= 1e-9)


def test_geometric_selector_prefers_progress_without_collisions():
    case_dir, _ = cached_split("navtest")
    case = json.loads(gzip.open(next(case_dir.rglob("*.json.gz")), "rt").read())
    from irlvla_bench.caching.pdm_closed import PlanningProblem

    ref = np.asarray(case["pdm_reference"]["states"])[:41]
    stay = np.repeat(ref[:1], 41, axis=0)
    problem = PlanningProblem(case, np.stack([stay, ref]), [[]] * 41, [])
    scores = geometric_selector(problem)
    assert scores[1] >= scores[0]


def test_cache_is_resumable_and_overwrite_recomputes(tmp_path):
    root, _ = tiny_world()
    case_dir, first = cached_split("navtest")
    files = sorted(case_dir.rglob("*.json.gz"))
    stamps = [f.stat().st_mtime_ns for f in files]
    again = cache_split(root, "navtest", case_dir)
    assert again.cached == 0 and again.skipped == first.cached and again.failed == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        token = load_cached_cases(case_dir)[0].token
        redo = cache_split(root, "navtest", tmp_path / "redo", tokens=[token])
    assert redo.cached == 1 and len(load_cached_cases(tmp_path / "redo")) == 1


def test_groups_reference_their_mappings():
    case_dir, _ = cached_split("navhard_two_stage")
    root, _ = tiny_world()
    from irlvla_bench.io.splits import load_split

    split = load_split("navhard_two_stage", root)
    groups = load_cached_groups(case_dir)
    assert len(groups) == len(split.mappings)
    for group, (now, prev, pairs) in zip(sorted(groups, key=lambda g: g.mappings[0].now),
                                         sorted(split.mappings, key=lambda m: m[0])):
        mapping = group.mappings[0]
        assert (mapping.now, mapping.prev, mapping.second_stage) == (now, prev, pairs)
        assert group.frames[now].is_original and not group.frames[pairs[0][0]].is_original


# ----------------------------------------------------------------------------------------------------------------
# Round trip through the evaluator (skipped when evaluators.epdms is not installed)


def _with_human(case):
    poses = np.concatenate([case.proposals.poses, case.human_future[None]])
    return case.with_proposals(Proposals(case.proposals.ids + ("human",), poses, case.proposals.labels + ("human",)))


def test_round_trip_scores_pdm_and_human_high_constant_velocity_fails():
    epdms = pytest.importorskip("evaluators.epdms", reason="EPDMS evaluator (evaluators.epdms) not available")
    scores: dict[str, list[float]] = {}
    for case in _all_cases():
        if case.is_original:
            case = _with_human(case)
        table = epdms.score_case(case).set_index("proposal_id")
        for pid, value in table["score_single_frame"].items():
            scores.setdefault(pid, []).append(float(value))
        if table.loc["pdm_closed", "score_single_frame"] == 0.0:
            # PDM-Closed plans with the lights of the current frame only (as in NAVSIM); its only excusable
            # failure is a light that turns red during the horizon.
            assert table.loc["pdm_closed", "traffic_light_compliance"] == 0.0
            assert table.loc["pdm_closed", "no_at_fault_collisions"] == 1.0
            assert any(set(r) - set(case.red_lane_connectors[0]) for r in case.red_lane_connectors)
    assert np.median(scores["pdm_closed"]) > 0.8
    assert np.mean(scores["human"]) > 0.8
    assert min(scores["constant_velocity"]) == 0.0
    assert np.mean(scores["constant_velocity"]) < np.mean(scores["pdm_closed"])


def test_round_trip_two_stage_groups_score():
    epdms = pytest.importorskip("evaluators.epdms", reason="EPDMS evaluator (evaluators.epdms) not available")
    groups = load_cached_groups(cached_split("navhard_two_stage")[0])
    result = epdms.score_groups(groups)
    assert result.num_agents == 3  # the cached proposals: pdm_closed, constant_velocity, brake
    pdm, constant_velocity = result.agents[0], result.agents[1]
    for agent in (pdm, constant_velocity):
        assert len(agent.mappings) == len(groups)
        values = [v for part in agent.summary.values() for v in part.values()]
        assert values and all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values)
    # Second-stage tokens are weighted by their start's distance to the first-stage endpoints.
    weights = [cols["weight"] for cols in pdm.token_columns.values() if "weight" in cols]
    assert weights and all(np.isfinite(w) and w >= 0.0 for w in weights)


def test_every_sub_metric_fails_for_some_plausible_trajectory():
    epdms = pytest.importorskip("evaluators.epdms", reason="EPDMS evaluator (evaluators.epdms) not available")
    t = 0.5 * np.arange(1, 9)
    failures = dict.fromkeys(epdms.SUB_METRICS, 0)
    for case in _all_cases():
        v = max(float(case.ego.velocity[0]), 3.0)
        proposals = {
            "constant_velocity": np.c_[v * t, 0 * t, 0 * t],
            "accelerate": np.c_[v * t + 1.5 * t**2, 0 * t, 0 * t],
            "swerve_left": np.c_[v * t, 0.6 * t**2, 0.36 * t],
            "swerve_right": np.c_[v * t, -0.6 * t**2, -0.36 * t],
            "jerky": np.c_[v * t + np.where(t > 1, 4 * (t - 1) ** 2, 0), 0.3 * np.sin(3 * t), 0.1 * np.sin(3 * t)],
        }
        case = case.with_proposals(Proposals(tuple(proposals), np.stack(list(proposals.values()))))
        table = epdms.score_case(case)
        for name in failures:
            failures[name] += int((table[name] < 1.0).any())
    assert all(count > 0 for count in failures.values()), failures
