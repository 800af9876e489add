"""pytest-benchmark entries for the evaluator (run with --benchmark-enable; by default each runs once)."""

from __future__ import annotations

import numpy as np
import pytest

from evaluators.epdms import score_frame
from irlvla_bench.examples import make_case
from irlvla_bench.io.scoring_case import parse_case
from irlvla_bench.types import Proposals


@pytest.fixture(scope="module")
def lead_case():
    return parse_case(make_case("lead", seed=5))


def test_bench_submission_mode(benchmark, lead_case):
    scores = benchmark(score_frame, lead_case, mode="submission")
    assert len(scores) == len(lead_case.proposals)


def test_bench_labelling_mode_1024(benchmark, lead_case):
    rng = np.random.default_rng(1)
    pick = rng.integers(0, len(lead_case.proposals), 1024)
    poses = lead_case.proposals.poses[pick] + rng.normal(0, 0.2, (1024, 8, 3)) * np.array([1.0, 1.0, 0.01])
    case = lead_case.with_proposals(Proposals(ids=tuple(map(str, range(1024))), poses=poses))
    scores = benchmark(score_frame, case, mode="labelling")
    assert scores.score_single_frame.shape == (1024,)


def test_bench_idm_labelling_mode_256(benchmark, lead_case):
    rng = np.random.default_rng(2)
    pick = rng.integers(0, len(lead_case.proposals), 256)
    poses = lead_case.proposals.poses[pick] + rng.normal(0, 0.2, (256, 8, 3)) * np.array([1.0, 1.0, 0.01])
    case = lead_case.with_proposals(Proposals(ids=tuple(map(str, range(256))), poses=poses))
    scores = benchmark(score_frame, case, mode="labelling", traffic="idm")
    assert scores.score_single_frame.shape == (256,)
