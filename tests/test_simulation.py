"""Ego simulation (resampling + LQR + bicycle) against NAVSIM's own simulated states, plus invariants."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluators.epdms.simulation import (
    PACIFICA_WHEEL_BASE,
    STATE_SIZE,
    TrackerConfig,
    proposal_poses_to_global,
    sample_poses_10hz,
    sample_reference_10hz,
    simulate,
)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "epdms"
TOL = 1e-6
# a real nuPlan epoch stamp: t0_s = time_us * 1e-6 is inexact, so truncated sample stamps land 1 us early
EPOCH_US = 1630257299792000


def _load(path: Path):
    with gzip.open(path, "rt") as fh:
        return json.load(fh)


def _golden_inputs(folder: str, pattern: str) -> list[Path]:
    base = GOLDEN / folder
    if not base.is_dir():
        return []
    return sorted(p for p in base.glob(pattern) if ".result" not in p.name)


def _require_golden() -> None:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN} (expected ../shared/golden next to the project)")


def _initial_state(ego: dict) -> np.ndarray:
    state = np.zeros(STATE_SIZE)
    state[0:3] = ego["rear_axle"]
    state[3:5] = ego["velocity"]
    state[5:7] = ego["acceleration"]
    state[7] = ego.get("steering_angle", 0.0)
    state[8] = ego.get("steering_rate", 0.0)
    state[9] = ego.get("angular_velocity", 0.0)
    state[10] = ego.get("angular_acceleration", 0.0)
    return state


def _simulate_case(case: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """(proposals (N, 41, 11), human (41, 11) or None) the way pdm_score simulates them."""
    ego = case["ego"]
    vehicle = case.get("vehicle") or {}
    config = TrackerConfig(wheel_base=vehicle.get("wheel_base", PACIFICA_WHEEL_BASE))
    init = _initial_state(ego)
    poses = np.array([p["poses"] for p in case["proposals"]], dtype=np.float64)
    proposals = sample_poses_10hz(ego["rear_axle"], case["time_us"], proposal_poses_to_global(ego["rear_axle"], poses))
    ref = case["pdm_reference"]
    reference = sample_reference_10hz(ref["states"], ref.get("interval_s", 0.1), case["time_us"])
    # NAVSIM simulates [PDM reference, proposal]; rows are independent, so one batch serves all proposals
    simulated = simulate(init, np.concatenate([reference[None], proposals]), config)[1:]
    human = None
    if case.get("human_future") is not None:
        human_global = proposal_poses_to_global(ego["rear_axle"], np.array(case["human_future"])[None])
        human = simulate(init, sample_poses_10hz(ego["rear_axle"], case["time_us"], human_global), config)[0]
    return simulated, human


def _result_files(case_path: Path) -> list[Path]:
    stem = case_path.name[: -len(".json.gz")]
    # the ego simulation does not depend on the traffic policy: log-replay and IDM results must both match
    names = (f"{stem}.result.json.gz", f"{stem}.result.idm.json.gz")
    return [case_path.with_name(name) for name in names if case_path.with_name(name).exists()]


def _check(label: str, expected, actual: np.ndarray) -> int:
    expected = np.asarray(expected, dtype=np.float64)
    assert expected.shape == actual.shape, f"{label}: shape {actual.shape} != {expected.shape}"
    err = float(np.max(np.abs(expected - actual)))
    assert err <= TOL, f"{label}: max abs error {err:.3e} > {TOL}"
    return expected.shape[0]


SINGLE_CASES = _golden_inputs("single", "*.json.gz")
GROUP_FILES = _golden_inputs("groups", "group_*.json.gz")


@pytest.mark.golden
@pytest.mark.parametrize("case_path", SINGLE_CASES or [None], ids=lambda p: p.name if p else "missing")
def test_golden_single_case(case_path):
    _require_golden()
    if case_path is None:
        pytest.skip(f"no single cases in {GOLDEN / 'single'}")
    case = _load(case_path)
    simulated, human = _simulate_case(case)
    results = _result_files(case_path)
    assert results, f"no NAVSIM result for {case_path.name}"
    for result_path in results:
        result = _load(result_path)
        assert [p["id"] for p in result["proposals"]] == [p["id"] for p in case["proposals"]]
        for i, proposal in enumerate(result["proposals"]):
            _check(f"{result_path.name} proposal {proposal['id']}", proposal["simulated_states"], simulated[i])
            human_expected = proposal.get("diagnostics", {}).get("human_simulated_states")
            if human_expected is not None:
                assert human is not None, "NAVSIM simulated a human trajectory the case does not have"
                _check(f"{result_path.name} human ({proposal['id']})", human_expected, human)


@pytest.mark.golden
@pytest.mark.parametrize("group_path", GROUP_FILES or [None], ids=lambda p: p.name if p else "missing")
def test_golden_group_frames(group_path):
    _require_golden()
    if group_path is None:
        pytest.skip(f"no groups in {GOLDEN / 'groups'}")
    group = _load(group_path)
    frames = {frame["token"]: frame for frame in group["frames"]}
    simulated = {token: _simulate_case(frame)[0] for token, frame in frames.items()}
    results = _result_files(group_path)
    assert results, f"no NAVSIM result for {group_path.name}"
    checked = 0
    for result_path in results:
        for agent in _load(result_path)["agents"]:
            k = agent["agent_index"]
            for token, row in agent["tokens"].items():
                assert frames[token]["proposals"][k]["id"] == row["proposal_id"]
                checked += 1
                _check(f"{result_path.name} agent {k} token {token}", row["simulated_states"], simulated[token][k])
    assert checked > 0


# ---------------------------------------------------------------------------------------------------------
# Invariants (no golden data needed)
# ---------------------------------------------------------------------------------------------------------


def _random_batch(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ego state at speed and n plausible ego-frame proposals (straight / curving / braking / lane changes)."""
    rng = np.random.default_rng(seed)
    ego = np.array([596686.25, 4318551.21, 2.9, 7.0, 0.0, -0.3, 0.0, 0.0, 0.0, 0.0, 0.0])
    t = np.arange(1, 9) * 0.5
    speed = np.clip(7.0 + rng.normal(0, 2, (n, 1)) + rng.normal(0, 1.5, (n, 1)) * t, 0, None)
    arc = np.cumsum(speed * 0.5, axis=1)
    curvature = rng.normal(0, 0.02, (n, 1))
    heading = curvature * arc
    poses = np.stack([arc * np.cos(heading / 2), arc * np.sin(heading / 2) + rng.normal(0, 0.2, (n, 8)), heading], -1)
    return ego, poses


def _sampled(ego: np.ndarray, poses: np.ndarray, time_us: int = EPOCH_US) -> np.ndarray:
    return sample_poses_10hz(ego[:3], time_us, proposal_poses_to_global(ego[:3], poses))


def test_config_defaults_are_navsims():
    cfg = TrackerConfig()
    assert cfg.wheel_base == cfg.tracker_wheel_base == 3.089
    assert (cfg.horizon, cfg.discretization_s, cfg.step_us) == (10, 0.1, 100_000)
    assert (cfg.q_longitudinal, cfg.r_longitudinal, cfg.q_lateral, cfg.r_lateral) == (10.0, 1.0, (1.0, 10.0, 0.0), 1.0)
    assert (cfg.jerk_penalty, cfg.curvature_rate_penalty, cfg.initial_curvature_penalty) == (1e-4, 1e-2, 1e-10)
    assert (cfg.stopping_velocity, cfg.stopping_gain) == (0.2, 0.5)
    assert (cfg.accel_time_constant, cfg.steering_time_constant, cfg.max_steering_angle) == (0.2, 0.05, math.pi / 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.horizon = 5  # type: ignore[misc]
    with pytest.raises(ValueError):
        TrackerConfig(horizon=1)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_shapes(n):
    ego, poses = _random_batch(n)
    glob = proposal_poses_to_global(ego[:3], poses)
    assert glob.shape == (n, 8, 3)
    sampled = sample_poses_10hz(ego[:3], EPOCH_US, glob)
    assert sampled.shape == (n, 41, 3)
    ref = sample_reference_10hz(np.concatenate([ego[None, :3], glob[0]]), 0.5, EPOCH_US)
    assert ref.shape == (41, 3)
    out = simulate(ego, sampled)
    assert out.shape == (n, 41, STATE_SIZE) and out.dtype == np.float64
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 0], np.broadcast_to(ego, (n, STATE_SIZE)))
    assert np.all(out[:, 1:, 2] >= -math.pi) and np.all(out[:, 1:, 2] < math.pi)
    assert np.all(np.abs(out[:, :, 7]) <= math.pi / 3 + 1e-15)
    assert simulate(ego, sampled[:0]).shape == (0, 41, STATE_SIZE)
    with pytest.raises(ValueError):
        simulate(ego[:5], sampled)


def test_rows_are_independent_of_the_batch():
    ego, poses = _random_batch(64, seed=3)
    sampled = _sampled(ego, poses)
    batch = simulate(ego, sampled)
    for i in (0, 1, 17, 63):
        np.testing.assert_array_equal(simulate(ego, sampled[i : i + 1])[0], batch[i])
        np.testing.assert_array_equal(_sampled(ego, poses[i : i + 1])[0], sampled[i])
    np.testing.assert_array_equal(simulate(ego, sampled[[5, 2]]), batch[[5, 2]])
    np.testing.assert_array_equal(simulate(ego, sampled[::-1])[::-1], batch)


def test_straight_constant_speed_stays_straight():
    heading, speed = 0.4, 8.0
    ego = np.array([1000.0, -2000.0, heading, speed, 0, 0, 0, 0, 0, 0, 0])
    poses = np.stack([speed * 0.5 * np.arange(1, 9), np.zeros(8), np.zeros(8)], -1)[None]
    out = simulate(ego, _sampled(ego, poses))[0]
    # lateral offset from the straight line, heading, speed, steering all stay put
    lateral = -(out[:, 0] - ego[0]) * math.sin(heading) + (out[:, 1] - ego[1]) * math.cos(heading)
    assert np.max(np.abs(lateral)) < 1e-6
    assert np.max(np.abs(out[:, 2] - heading)) < 1e-9
    assert np.max(np.abs(out[:, 3] - speed)) < 1e-3
    assert np.max(np.abs(out[:, 7])) < 1e-9
    along = (out[:, 0] - ego[0]) * math.cos(heading) + (out[:, 1] - ego[1]) * math.sin(heading)
    assert abs(along[-1] - speed * 4.0) < 0.01


def test_standing_still_stays_put():
    ego = np.array([5.0, 6.0, -3.0, 0.0, 0, 0, 0, 0, 0, 0, 0])
    out = simulate(ego, _sampled(ego, np.zeros((1, 8, 3))))[0]
    np.testing.assert_allclose(out[:, :2], np.broadcast_to(ego[:2], (41, 2)), atol=1e-12)
    assert np.max(np.abs(out[:, 3])) < 1e-12


def test_sample_stamps_truncate_like_navsim():
    # the ego pose at t0 plus 8 poses on a line with distinct speeds per segment, so positions reveal the stamps
    ego = np.array([0.0, 0.0, 0.0])
    x = np.cumsum(np.arange(1, 9, dtype=np.float64))
    poses = np.stack([x, np.zeros(8), np.zeros(8)], -1)[None]
    got = sample_poses_10hz(ego, EPOCH_US, poses)[0]
    t0_s = EPOCH_US * 1e-6
    knots = np.array([EPOCH_US] + [int((t0_s + 0.5 * (k + 1)) * 1e6) for k in range(8)], dtype=np.float64)
    stamps = np.array([int((t0_s + 0.1 * i) * 1e6) for i in range(41)], dtype=np.float64)
    assert np.sum(stamps - (EPOCH_US + 100_000 * np.arange(41)) == -1) > 10  # the quirk is really exercised
    expected = np.interp(np.clip(stamps, knots[0], knots[-1]), knots, np.concatenate([[0.0], x]))
    np.testing.assert_allclose(got[:, 0], expected, rtol=0, atol=1e-12)
    assert got[0, 0] == 0.0  # sample 0 is 1 us before t0 and clipped back onto the ego pose


def test_headings_unwrap_across_pi():
    # driving west (heading ~ pi) while turning slightly left: headings cross +pi -> -pi
    ego = np.array([0.0, 0.0, math.pi - 0.05])
    rel_heading = np.linspace(0.0125, 0.1, 8)
    poses = np.stack([4.0 * np.arange(1, 9), np.zeros(8), rel_heading], -1)[None]
    glob = proposal_poses_to_global(ego, poses)
    assert glob[0, -1, 2] < 0  # atan2 wrapped it
    sampled = sample_poses_10hz(ego, EPOCH_US, glob)[0]
    unwrapped = np.unwrap(sampled[:, 2])
    assert np.all(np.diff(unwrapped) >= -1e-12) and unwrapped[-1] - unwrapped[0] == pytest.approx(0.1, abs=1e-6)
    assert np.all(sampled[:, 2] >= -math.pi) and np.all(sampled[:, 2] < math.pi)
    out = simulate(np.array([0, 0, ego[2], 8.0, 0, 0, 0, 0, 0, 0, 0]), sampled[None])[0]
    assert np.all(np.isfinite(out)) and np.max(np.abs(out[:, 7])) < 0.2


def test_reference_resampling_is_identity_on_its_own_grid():
    rng = np.random.default_rng(1)
    states = np.cumsum(rng.normal(0, 0.5, (41, 3)), axis=0)
    states[:, 2] = np.mod(states[:, 2] + math.pi, 2 * math.pi) - math.pi
    got = sample_reference_10hz(states, 0.1, 0)  # t0 = 0: every truncated stamp is exact
    np.testing.assert_allclose(got, states, atol=1e-9)
    # with t0 = 1 s only sample 31 lands 1 us early ((1.0 + 3.1) * 1e6 = 4099999.9999999995) and moves off
    shifted = sample_reference_10hz(states, 0.1, 1_000_000)
    moved = np.flatnonzero(np.any(shifted != got, axis=1))
    assert 31 in moved and np.max(np.abs(np.delete(shifted - got, 31, axis=0))) < 1e-9
    # 11-column rows are accepted; only x, y, heading are used
    wide = np.concatenate([states, rng.normal(size=(41, 8))], axis=1)
    np.testing.assert_array_equal(sample_reference_10hz(wide, 0.1, 0), got)
