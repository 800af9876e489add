"""Fidelity metrics of a learned scorer against the exact one: pure functions of arrays (no I/O, no model).

* Binary sub-metrics (label 1 = pass, score = predicted probability of passing): AUROC (Mann-Whitney with
  average ranks; NaN when one class is absent), accuracy and F1 at a threshold (F1 of the *violation* class,
  the rare and costly one), Brier score, expected calibration error and the reliability curve (equal-width
  bins).
* Regression: MAE, R^2, Pearson, Spearman and Kendall (tau-b) correlations, and the Spearman ceiling of a
  tie-free score (``spearman_ceiling_untied``).
* Within-scene ranking: top-1 regret (exact best minus exact value of the predicted best, per scene; ties in
  the prediction go to the first candidate) and NDCG@k with the exact scores as gains (1 where every ordering
  is ideal, i.e. all gains are 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_BINS = 10


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape} vs {s.shape}")
    return y, s


def auroc(labels, scores) -> float:
    """Area under the ROC curve of ``scores`` for ``labels`` (truthy = positive); NaN with a single class."""
    y, s = _arrays(labels, scores)
    positive = y > 0.5
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = stats.rankdata(s)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def accuracy(labels, scores, threshold: float = 0.5) -> float:
    y, s = _arrays(labels, scores)
    return float(np.mean((s >= threshold) == (y > 0.5))) if len(y) else float("nan")


def f1_violation(labels, scores, threshold: float = 0.5) -> float:
    """F1 of the violation class (label 0) when a score below ``threshold`` predicts a violation; NaN when there
    is no violation in the labels nor in the predictions."""
    y, s = _arrays(labels, scores)
    actual, predicted = y <= 0.5, s < threshold
    tp = int(np.sum(actual & predicted))
    denominator = int(actual.sum() + predicted.sum())
    return float(2 * tp / denominator) if denominator else float("nan")


def brier(labels, probabilities) -> float:
    y, p = _arrays(labels, probabilities)
    return float(np.mean((p - (y > 0.5)) ** 2)) if len(y) else float("nan")


@dataclass(frozen=True)
class Reliability:
    lower: np.ndarray  # bin edges
    upper: np.ndarray
    mean_predicted: np.ndarray  # NaN for empty bins
    fraction_positive: np.ndarray
    count: np.ndarray


def reliability_curve(labels, probabilities, bins: int = DEFAULT_BINS) -> Reliability:
    y, p = _arrays(labels, probabilities)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=bins) / count
        frac = np.bincount(index, weights=(y > 0.5).astype(float), minlength=bins) / count
    return Reliability(edges[:-1], edges[1:], mean_p, frac, count)


def ece(labels, probabilities, bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error: count-weighted mean |fraction positive - mean predicted| over bins."""
    curve = reliability_curve(labels, probabilities, bins)
    used = curve.count > 0
    if not used.any():
        return float("nan")
    gap = np.abs(curve.fraction_positive[used] - curve.mean_predicted[used])
    return float(np.sum(gap * curve.count[used]) / curve.count[used].sum())


def mae(values, predictions) -> float:
    y, p = _arrays(values, predictions)
    return float(np.mean(np.abs(p - y))) if len(y) else float("nan")


def r2(values, predictions) -> float:
    """Coefficient of determination; NaN when the values are constant."""
    y, p = _arrays(values, predictions)
    total = np.sum((y - y.mean()) ** 2)
    return float(1.0 - np.sum((y - p) ** 2) / total) if total > 0 else float("nan")


def correlations(values, predictions) -> dict[str, float]:
    y, p = _arrays(values, predictions)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return {"pearson": float("nan"), "spearman": float("nan"), "kendall": float("nan")}
    return {"pearson": float(stats.pearsonr(y, p)[0]), "spearman": float(stats.spearmanr(y, p)[0]),
            "kendall": float(stats.kendalltau(y, p)[0])}


def spearman_ceiling_untied(values, seed: int = 0) -> float:
    """The highest Spearman correlation a score *without ties* can reach against ``values``: that of the values
    themselves with their ties broken at random. Far below 1 when many values are equal (e.g. the many exact
    EPDMS of 0), which caps any continuous predictor, however good its ordering."""
    y = np.asarray(values, dtype=np.float64).ravel()
    if len(y) < 2 or np.all(y == y[0]):
        return float("nan")
    jitter = np.random.default_rng(seed).random(len(y))
    order = np.lexsort((jitter, y))
    untied = np.empty(len(y))
    untied[order] = np.arange(len(y))
    return float(stats.spearmanr(y, untied)[0])


def _groups(scene_ids) -> list[np.ndarray]:
    ids = np.asarray(scene_ids)
    _, inverse = np.unique(ids, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    splits = np.flatnonzero(np.diff(inverse[order])) + 1
    return np.split(order, splits)


def top1_regret(scene_ids, exact, predicted) -> np.ndarray:
    """Per scene: max exact - exact of the candidate the prediction ranks first (scene order of first id)."""
    y, p = _arrays(exact, predicted)
    return np.array([y[g].max() - y[g][int(np.argmax(p[g]))] for g in _groups(scene_ids)])


def ndcg_at_k(scene_ids, exact, predicted, k: int) -> np.ndarray:
    """Per scene NDCG@k with gains = exact scores (clipped at 0), discount 1 / log2(rank + 1)."""
    y, p = _arrays(exact, predicted)
    out = []
    for g in _groups(scene_ids):
        gains = np.maximum(y[g], 0.0)
        top = min(k, len(g))
        discount = 1.0 / np.log2(np.arange(2, top + 2))
        ideal = np.sort(gains)[::-1][:top] @ discount
        # Stable sort on -p: ties keep candidate order, as top1_regret does.
        got = gains[np.argsort(-p[g], kind="stable")[:top]] @ discount
        out.append(1.0 if ideal == 0 else got / ideal)
    return np.array(out)


def binary_summary(labels, probabilities, threshold: float = 0.5, bins: int = DEFAULT_BINS) -> dict:
    y, p = _arrays(labels, probabilities)
    return {"n": int(len(y)), "pass_rate": float(np.mean(y > 0.5)) if len(y) else float("nan"),
            "auroc": auroc(y, p), "accuracy": accuracy(y, p, threshold), "f1_violation": f1_violation(y, p, threshold),
            "brier": brier(y, p), "ece": ece(y, p, bins)}


def ranking_summary(scene_ids, exact, predicted, ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    regret = top1_regret(scene_ids, exact, predicted)
    out = {"scenes": int(len(regret)), "top1_regret_mean": float(regret.mean()) if len(regret) else float("nan"),
           "top1_regret_median": float(np.median(regret)) if len(regret) else float("nan"),
           "top1_regret_p90": float(np.percentile(regret, 90)) if len(regret) else float("nan")}
    for k in ks:
        values = ndcg_at_k(scene_ids, exact, predicted, k)
        out[f"ndcg@{k}"] = float(values.mean()) if len(values) else float("nan")
    return out
