"""Fidelity metrics on synthetic predictions with known answers: perfect, inverted and random scorers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from reports import fidelity as fm

RNG = np.random.default_rng(0)
N = 20_000
LABELS = RNG.random(N) < 0.7  # 70 % pass


def test_perfect_binary_predictions():
    probs = LABELS.astype(float)
    s = fm.binary_summary(LABELS, probs)
    assert s["auroc"] == 1.0 and s["accuracy"] == 1.0 and s["f1_violation"] == 1.0
    assert s["brier"] == 0.0 and s["ece"] == 0.0
    assert s["pass_rate"] == pytest.approx(LABELS.mean())


def test_inverted_binary_predictions():
    probs = 1.0 - LABELS.astype(float)
    assert fm.auroc(LABELS, probs) == 0.0
    assert fm.accuracy(LABELS, probs) == 0.0
    assert fm.f1_violation(LABELS, probs) == 0.0
    assert fm.brier(LABELS, probs) == 1.0 and fm.ece(LABELS, probs) == 1.0


def test_random_binary_predictions_are_at_chance():
    probs = RNG.random(N)
    assert abs(fm.auroc(LABELS, probs) - 0.5) < 0.02
    assert abs(fm.accuracy(LABELS, probs) - 0.5) < 0.02
    # Uniform probabilities against a 70 % base rate: Brier = E[(p - y)^2] = 1/3 whatever the base rate.
    assert fm.brier(LABELS, probs) == pytest.approx(1.0 / 3.0, abs=0.01)


def test_auroc_counts_ties_as_half_and_needs_both_classes():
    assert fm.auroc([0, 1], [0.5, 0.5]) == 0.5
    assert fm.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert math.isnan(fm.auroc([1, 1, 1], [0.2, 0.3, 0.9]))


def test_calibrated_probabilities_have_small_ece_and_reliability_on_the_diagonal():
    probs = RNG.random(N)
    outcomes = RNG.random(N) < probs  # calibrated by construction
    assert fm.ece(outcomes, probs) < 0.02
    curve = fm.reliability_curve(outcomes, probs, bins=5)
    assert np.allclose(curve.fraction_positive, curve.mean_predicted, atol=0.03)
    assert curve.count.sum() == N and np.allclose(curve.lower, [0, 0.2, 0.4, 0.6, 0.8])
    overconfident = np.where(probs > 0.5, 1.0, 0.0)
    assert fm.ece(outcomes, overconfident) > 0.2


def test_regression_metrics():
    y = RNG.random(1000)
    assert fm.mae(y, y) == 0.0 and fm.r2(y, y) == 1.0
    assert fm.r2(y, np.full_like(y, y.mean())) == pytest.approx(0.0)
    c = fm.correlations(y, y)
    assert c["pearson"] == pytest.approx(1.0) and c["spearman"] == pytest.approx(1.0) and c["kendall"] == pytest.approx(1.0)
    c = fm.correlations(y, -y)
    assert c["pearson"] == pytest.approx(-1.0) and c["spearman"] == pytest.approx(-1.0) and c["kendall"] == pytest.approx(-1.0)
    c = fm.correlations(y, RNG.random(1000))
    assert abs(c["spearman"]) < 0.1 and abs(c["kendall"]) < 0.1
    assert math.isnan(fm.correlations(np.ones(5), y[:5])["spearman"])


def _scenes(num_scenes=200, per_scene=50):
    ids = np.repeat(np.arange(num_scenes), per_scene)
    exact = RNG.random(len(ids))
    return ids, exact


def test_ranking_perfect_inverted_random():
    ids, exact = _scenes()
    perfect = fm.ranking_summary(ids, exact, exact)
    assert perfect["top1_regret_mean"] == 0.0 and perfect["ndcg@1"] == 1.0 and perfect["ndcg@10"] == 1.0
    # Inverted: the pick is each scene's worst candidate, the regret its max - min.
    regret = fm.top1_regret(ids, exact, -exact)
    spread = pd.Series(exact).groupby(ids).agg(lambda v: v.max() - v.min()).to_numpy()
    assert np.allclose(regret, spread)
    assert fm.ranking_summary(ids, exact, -exact)["ndcg@5"] < 0.2
    random = fm.ranking_summary(ids, exact, RNG.random(len(ids)))
    # A random pick of 50 uniform values misses the best by ~ (max - mean) ~ 0.48 on average.
    assert 0.4 < random["top1_regret_mean"] < 0.56
    assert perfect["ndcg@5"] > random["ndcg@5"] > fm.ranking_summary(ids, exact, -exact)["ndcg@5"]


def test_ranking_ties_and_zero_gains():
    ids = np.array([0, 0, 0, 1, 1])
    exact = np.array([0.2, 0.9, 0.5, 0.0, 0.0])
    constant = np.zeros(5)
    # A constant prediction picks the first candidate of each scene.
    assert np.allclose(fm.top1_regret(ids, exact, constant), [0.7, 0.0])
    assert np.allclose(fm.ndcg_at_k(ids, exact, exact, 2), [1.0, 1.0])  # all-zero scene: every order is ideal
    # Scenes are independent of their position in the arrays.
    order = np.array([3, 0, 4, 1, 2])
    assert np.allclose(sorted(fm.top1_regret(ids[order], exact[order], exact[order])), [0.0, 0.0])


def test_spearman_ceiling_of_tie_free_scores():
    y = np.concatenate([np.zeros(700), RNG.random(300)])
    ceiling = fm.spearman_ceiling_untied(y)
    # A perfect ordering that does not tie the zeros reaches the ceiling and no more.
    untied = y + np.where(y == 0, RNG.random(len(y)) * 1e-9, 0.0)
    assert fm.correlations(y, untied)["spearman"] == pytest.approx(ceiling, abs=0.01)
    assert ceiling < 0.85 and fm.correlations(y, y)["spearman"] == pytest.approx(1.0)
    assert fm.spearman_ceiling_untied(RNG.random(500)) == pytest.approx(1.0)


def _label_table(rng, n=400):
    """Exact labels of n candidates (gates with realistic failure rates) and their EPDMS."""
    import pandas as pd

    from irlvla_bench.labelling.epdms import epdms

    table = {"no_at_fault_collisions": rng.choice([0.0, 0.5, 1.0], n, p=[0.3, 0.1, 0.6]),
             "driving_direction_compliance": rng.choice([0.0, 0.5, 1.0], n, p=[0.1, 0.2, 0.7]),
             "drivable_area_compliance": (rng.random(n) > 0.3).astype(float),
             "traffic_light_compliance": (rng.random(n) > 0.1).astype(float),
             "ego_progress": rng.random(n),
             "time_to_collision_within_bound": (rng.random(n) > 0.2).astype(float),
             "lane_keeping": (rng.random(n) > 0.2).astype(float),
             "history_comfort": (rng.random(n) > 0.1).astype(float),
             "extended_comfort": (rng.random(n) > 0.5).astype(float)}
    table["epdms"] = epdms(table, table["extended_comfort"])
    return pd.DataFrame(table)


def test_plugin_epdms_of_exact_or_confident_predictions_equals_the_exact_epdms():
    from reports.fidelity_report import PRED, plugin_epdms

    rng = np.random.default_rng(3)
    table = _label_table(rng)
    exact = table.copy()
    for column in list(table.columns):
        exact[PRED + column] = table[column]
    assert np.allclose(plugin_epdms(exact), table["epdms"])
    # Confident but not one-hot gate predictions (e.g. p = 0.8 for a pass, an expected NC of 0.6 for 0.5) still
    # round to the exact gates, so the plug-in estimate reproduces the exact ties; the expected one cannot.
    confident = exact.copy()
    for m in ("drivable_area_compliance", "traffic_light_compliance"):
        confident[PRED + m] = np.where(table[m] == 1.0, 0.8, 0.2)
    for m in ("no_at_fault_collisions", "driving_direction_compliance"):
        confident[PRED + m] = table[m] * 0.8 + 0.1
    plugin = plugin_epdms(confident)
    assert np.allclose(plugin, table["epdms"])
    assert np.array_equal(plugin == 0, table["epdms"].to_numpy() == 0)


def test_plugin_epdms_of_inverted_gates_zeroes_the_passing_candidates():
    from reports.fidelity_report import PRED, plugin_epdms

    table = _label_table(np.random.default_rng(4))
    inverted = table.copy()
    for column in list(table.columns):
        inverted[PRED + column] = table[column]
    inverted[PRED + "drivable_area_compliance"] = 1.0 - table["drivable_area_compliance"]
    plugin = plugin_epdms(inverted)
    passing = table["drivable_area_compliance"].to_numpy() == 1.0
    assert np.all(plugin[passing] == 0.0)
    assert np.any(plugin[~passing] > 0.0)
