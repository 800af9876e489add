"""IRL labels: candidates, exactness against the scorer, determinism, resume after a kill, Ray workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_data_fixtures import cached_split, tiny_world

from evaluators.epdms import score_frame
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.io.scoring_case import load_case
from irlvla_bench.labelling import (
    CandidateConfig,
    LabelConfig,
    build_candidates,
    epdms,
    fit_vocabulary,
    kmeans,
    label_case,
    label_split,
    load_labels,
    perturb,
    poses_of,
    training_trajectories,
)
from irlvla_bench.labelling.candidates import PerturbationConfig, scene_rng
from irlvla_bench.labelling.label import list_cache, shard_files
from irlvla_bench.types import Proposals

CONFIG = LabelConfig(candidates=CandidateConfig(perturbations=12, seed=3))
PROJECT = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=None)
def vocabulary() -> np.ndarray:
    return fit_vocabulary(training_trajectories(cached_split("navtest")[0]), 24, seed=1)


@lru_cache(maxsize=None)
def labelled(split: str = "navtest") -> Path:
    """One single-process labelling of a tiny-world split (shared by the tests that only read it)."""
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="irlvla_labels_")) / split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        label_split(cached_split(split)[0], out, vocabulary(), CONFIG)
    return out


def _first_case():
    return load_case(list_cache(cached_split("navtest")[0])[0].path)


# ----------------------------------------------------------------------------------------------------------------
# Candidates


def test_kmeans_is_deterministic_and_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    a, b = kmeans(points, 3, seed=4), kmeans(points, 3, seed=4)
    assert np.array_equal(a, b)
    assert np.allclose(np.sort(np.linalg.norm(a, axis=1)), np.sort(np.linalg.norm(centres, axis=1)), atol=0.3)
    with pytest.raises(ValueError):
        kmeans(points[:2], 3, seed=0)


def test_vocabulary_has_the_requested_distinct_entries():
    vocab = vocabulary()
    assert vocab.shape == (24, 8, 3) and np.isfinite(vocab).all()
    assert len(np.unique(vocab.round(6), axis=0)) == 24
    assert np.array_equal(vocab, fit_vocabulary(training_trajectories(cached_split("navtest")[0]), 24, seed=1))


def test_perturbations_are_seeded_finite_and_span_the_boundaries():
    case = _first_case()
    cfg = PerturbationConfig()
    a = perturb(case.human_future, 64, scene_rng(0, case.token, "p"), cfg)
    b = perturb(case.human_future, 64, scene_rng(0, case.token, "p"), cfg)
    assert a.shape == (64, 8, 3) and np.isfinite(a).all() and np.array_equal(a, b)
    offsets = np.abs(a[:, -1, :2] - case.human_future[-1, :2]).max(axis=1)
    assert offsets.min() < 1.0 < offsets.max()  # near-expert and far-off variants both present


def test_candidate_mix_and_order():
    case = _first_case()
    cands = build_candidates(case, vocabulary(), CandidateConfig(perturbations=5, vocabulary_per_scene=10))
    assert cands.sources[:2] == ("reference", "human")
    assert cands.sources.count("vocabulary") == 10 and cands.sources.count("perturbation") == 5
    assert len(set(cands.ids)) == len(cands)

    def sampler(case, n, seed):
        return np.repeat(case.human_future[None], n, axis=0) * 0.5

    with_il = build_candidates(case, vocabulary(), CandidateConfig(perturbations=0, il_samples=3), sampler)
    assert with_il.sources[-3:] == ("il",) * 3
    with pytest.raises(ValueError, match="il_sampler"):
        build_candidates(case, vocabulary(), CandidateConfig(il_samples=2))


# ----------------------------------------------------------------------------------------------------------------
# Labels


def test_labels_are_the_exact_scorer_on_the_same_poses():
    case = _first_case()
    table = label_case(case, vocabulary(), CONFIG)
    poses = poses_of(table)
    scores = score_frame(case.with_proposals(Proposals(tuple(table["candidate_id"]), poses)), mode="labelling")
    for m in SUB_METRICS:
        assert np.array_equal(table[m].to_numpy(), scores.metrics[m]), m
        assert np.array_equal(table["raw_" + m].to_numpy(), scores.unfiltered[m]), m
    ec = table["extended_comfort"].to_numpy()
    assert set(np.unique(ec)) <= {0.0, 1.0}
    assert table.loc[table["source"] == "human", "extended_comfort"].item() == 1.0  # consistent with its own plan
    expected = epdms({m: table[m].to_numpy() for m in SUB_METRICS}, ec)
    assert np.allclose(table["epdms"], expected)
    assert table["source"].isin(["reference", "human", "vocabulary", "perturbation"]).all()


def test_epdms_formula_is_the_evaluators_row_score():
    from evaluators.epdms.aggregate import TokenRow, _row_score
    from evaluators.epdms.config import NAVSIM_V2

    rng = np.random.default_rng(2)
    metrics = {m: rng.choice([0.0, 0.5, 1.0], 50) if m != "ego_progress" else rng.random(50) for m in SUB_METRICS}
    ec = rng.choice([0.0, 1.0], 50)
    ours = epdms(metrics, ec)
    for i in range(50):
        row = {m: metrics[m][i] for m in SUB_METRICS}
        product = np.prod([row[m] for m in SUB_METRICS[:4]])
        token = TokenRow(row, product, np.zeros((41, 11)), 0, np.zeros(2), np.zeros(2))
        assert ours[i] == pytest.approx(_row_score(token, ec[i], NAVSIM_V2), abs=1e-12)


def test_labelling_a_scene_twice_gives_identical_rows(tmp_path):
    case = _first_case()
    a = label_case(case, vocabulary(), CONFIG, case_file="x")
    b = label_case(case, vocabulary(), CONFIG, case_file="x")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    # And through a split run in another folder: the same shard rows.
    first = labelled()
    entry = list_cache(cached_split("navtest")[0])[0]
    other = tmp_path / "again"
    label_split(cached_split("navtest")[0], other, vocabulary(), CONFIG, tokens=[entry.token])
    pd.testing.assert_frame_equal(load_labels(other), load_labels(first, tokens={entry.token}), check_exact=True)


def test_split_summary_and_refused_config_change(tmp_path):
    out = labelled()
    summary = json.loads((out / "label_summary.json").read_text())
    scenes = len(list_cache(cached_split("navtest")[0]))
    assert summary["labelled"] == scenes and summary["failed"] == 0
    assert summary["trajectories_per_s_per_worker"] > 0
    assert summary["balance"]["all"]["rows"] == len(load_labels(out))
    assert len(shard_files(out)) == scenes
    from irlvla_bench.errors import InputError

    with pytest.raises(InputError, match="config"):
        label_split(cached_split("navtest")[0], out, vocabulary(), LabelConfig(candidates=CandidateConfig(seed=9)))


def _slow_labelling_script(cache_dir: Path, out: Path, vocab_path: Path) -> str:
    """A labelling run whose scenes take >= 0.4 s each, so that it can be killed half-way."""
    return textwrap.dedent(f"""
        import json, time, numpy as np
        import irlvla_bench.labelling.label as lab
        original = lab.label_case
        def slow(*args, **kwargs):
            time.sleep(0.4)
            return original(*args, **kwargs)
        lab.label_case = slow
        config = lab.LabelConfig.from_dict(json.loads({json.dumps(json.dumps(CONFIG.to_dict()))}))
        lab.label_split({str(cache_dir)!r}, {str(out)!r}, np.load({str(vocab_path)!r}), config)
    """)


def test_killed_labelling_resumes_without_loss_or_duplicates(tmp_path):
    cache_dir = cached_split("navhard_two_stage")[0]
    reference = tmp_path / "clean"
    label_split(cache_dir, reference, vocabulary(), CONFIG)
    vocab_path = tmp_path / "vocab.npy"
    np.save(vocab_path, vocabulary())
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    proc = subprocess.Popen([sys.executable, "-c", _slow_labelling_script(cache_dir, out, vocab_path)], env=env,
                            cwd=PROJECT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(shard_files(out)) < 3 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = len(shard_files(out))
    total = len(list_cache(cache_dir))
    assert 3 <= done_before < total
    # A half-written shard of a killed writer (a temporary file) must be ignored and cleared.
    stale = next(iter(shard_files(out))).parent / ".partial.parquet.abc.tmp"
    stale.write_bytes(b"garbage")
    summary = label_split(cache_dir, out, vocabulary(), CONFIG)
    assert summary.count("skipped") == done_before and summary.count("labelled") == total - done_before
    assert not list(out.rglob("*.tmp"))
    a, b = load_labels(out), load_labels(reference)
    assert not a.duplicated(["token", "candidate_index"]).any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.slow
def test_two_ray_workers_label_the_same_rows(tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = label_split(cached_split("navtest")[0], out, vocabulary(), CONFIG, workers=2, batch_size=2)
    assert summary.workers == 2 and summary.count("failed") == 0
    pd.testing.assert_frame_equal(load_labels(out), load_labels(labelled()), check_exact=True)


def test_label_command(tmp_path):
    import typer
    from typer.testing import CliRunner

    from irlvla_bench.label_cli import register

    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """root"""

    root, _ = tiny_world()
    out = tmp_path / "labels"
    args = ["label", "--data", str(root), "--split", "navtest", "--out", str(out), "--cache",
            str(cached_split("navtest")[0]), "--vocab-size", "8", "--perturbations", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert np.load(out / "vocabulary.npy").shape == (8, 8, 3)
    table = load_labels(out)
    assert set(table["source"]) == {"reference", "human", "vocabulary", "perturbation"}
    config = json.loads((out / "labels_config.json").read_text())
    assert config["split"] == "navtest" and config["data_root"] == str(root.resolve())
    bad = CliRunner().invoke(app, args + ["--traffic", "nope"])
    assert bad.exit_code == 2


def test_reactive_traffic_labels_when_available():
    from evaluators.epdms import available_policies

    if "idm" not in available_policies():
        pytest.skip("the reactive IDM traffic policy is not registered in this checkout")
    case = _first_case()
    config = LabelConfig(candidates=CandidateConfig(perturbations=3), traffic="idm")
    a = label_case(case, vocabulary()[:4], config)
    b = label_case(case, vocabulary()[:4], config)
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert len(a) == 2 + 4 + 3 and a["epdms"].between(0, 1).all()
