"""Properties of the scorer: value sets, determinism, labelling mode == submission mode per proposal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evaluators.epdms import SUB_METRICS, score_frame
from irlvla_bench.examples import SCENARIOS, make_case
from irlvla_bench.io.scoring_case import parse_case
from irlvla_bench.types import Proposals

VALUE_SETS = {
    "no_at_fault_collisions": {0.0, 0.5, 1.0},
    "drivable_area_compliance": {0.0, 1.0},
    "driving_direction_compliance": {0.0, 0.5, 1.0},
    "traffic_light_compliance": {0.0, 1.0},
    "time_to_collision_within_bound": {0.0, 1.0},
    "lane_keeping": {0.0, 1.0},
    "history_comfort": {0.0, 1.0},
}

_CASES = {name: parse_case(make_case(name, seed=11 + i)) for i, name in enumerate(SCENARIOS)}

trajectories = st.builds(
    lambda speed, accel, lateral, onset: np.column_stack(
        [
            np.maximum(0.0, speed * (t := np.arange(1, 9) * 0.5) + 0.5 * accel * t**2),
            lateral / (1.0 + np.exp(-3.0 * (t - onset))),
            np.zeros(8),
        ]
    ),
    st.floats(0.0, 16.0),
    st.floats(-4.0, 3.0),
    st.floats(-9.0, 9.0),
    st.floats(0.5, 3.5),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=st.sampled_from(SCENARIOS), poses=st.lists(trajectories, min_size=1, max_size=4))
def test_metrics_stay_in_value_sets_and_modes_agree(scenario, poses):
    base = _CASES[scenario]
    stacked = np.stack(poses)
    case = base.with_proposals(Proposals(ids=tuple(f"p{i}" for i in range(len(poses))), poses=stacked))
    labelling = score_frame(case, mode="labelling")
    submission = score_frame(case, mode="submission")
    for name, allowed in VALUE_SETS.items():
        assert set(np.unique(labelling.metrics[name])) <= allowed, name
    assert np.all((labelling.metrics["ego_progress"] >= 0) & (labelling.metrics["ego_progress"] <= 1))
    assert np.all((labelling.score_single_frame >= 0) & (labelling.score_single_frame <= 1))
    for name in SUB_METRICS:
        np.testing.assert_array_equal(labelling.metrics[name], submission.metrics[name])
    np.testing.assert_array_equal(labelling.score_single_frame, submission.score_single_frame)
    np.testing.assert_array_equal(labelling.simulated_states, submission.simulated_states)


def test_scoring_is_deterministic():
    case = _CASES["lead"]
    first = score_frame(case, mode="labelling")
    second = score_frame(case, mode="labelling")
    np.testing.assert_array_equal(first.score_single_frame, second.score_single_frame)
    np.testing.assert_array_equal(first.simulated_states, second.simulated_states)


def test_proposal_score_does_not_depend_on_its_batch():
    case = _CASES["cone"]
    full = score_frame(case, mode="labelling")
    alone = score_frame(case.with_proposals(Proposals(ids=case.proposals.ids[2:3], poses=case.proposals.poses[2:3])),
                        mode="labelling")
    assert alone.score_single_frame[0] == full.score_single_frame[2]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_examples_separate_good_from_bad(scenario):
    scores = score_frame(_CASES[scenario], mode="labelling")
    ids = list(_CASES[scenario].proposals.ids)
    by_id = dict(zip(ids, scores.score_single_frame))
    # Leaving the road is always penalised; the best proposal of every example scores well.
    assert by_id["off_road_right"] == 0.0
    assert max(by_id.values()) > 0.8


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rows=st.integers(1, 4), steps=st.integers(6, 50),
       scale=st.sampled_from([0.1, 1.0, 4.0]))
def test_history_comfort_kernel_equals_the_numpy_steps(seed, rows, steps, scale):
    """The numba HC kernel against NAVSIM's steps written in NumPy, on random state sequences from smooth to
    violent (near-bound values included: the flags must agree, not only the filtered signals)."""
    from evaluators.epdms.config import NAVSIM_V2
    from evaluators.epdms.metrics.comfort import comfort_flags, comfort_flags_numpy, time_step
    from irlvla_bench.types import StateIndex

    rng = np.random.default_rng(seed)
    states = np.zeros((rows, steps, 11))
    states[..., StateIndex.ACCELERATION_X] = np.cumsum(rng.normal(0.0, scale, (rows, steps)), axis=1) * 0.2
    states[..., StateIndex.ACCELERATION_Y] = rng.normal(0.0, scale, (rows, steps))
    states[..., StateIndex.HEADING] = np.cumsum(rng.normal(0.0, 0.05 * scale, (rows, steps)), axis=1) + 3.1
    states[..., StateIndex.ANGULAR_VELOCITY] = rng.normal(0.0, 0.2 * scale, (rows, steps))
    states[..., StateIndex.ANGULAR_ACCELERATION] = rng.normal(0.0, 0.3 * scale, (rows, steps))
    time_s = np.arange(steps) * 0.1
    expected = comfort_flags_numpy(states, time_s, 1.461, NAVSIM_V2.comfort)
    np.testing.assert_array_equal(comfort_flags(states, time_step(time_s), 1.461, NAVSIM_V2.comfort), expected)
