"""Paired regression comparison of two evaluations (``irlvla-evaluation/v1`` folders, docs/evaluation-schema.md).

A table of two means hides whether a change is real: with a few hundred tokens and metrics that are mostly 0/1,
a difference of one point can be noise. So every number here is paired over tokens: the same token scored by
agent A and agent B, ``delta = B - A`` (every EPDMS sub-metric is "higher is better", so a positive delta is a
gain for B), with

* the mean of A, of B and of the delta,
* a paired bootstrap 95% percentile interval of the mean delta (tokens resampled with replacement, seeded),
* the Wilcoxon signed-rank p-value of the per-token deltas (zeros dropped, the ``wilcox`` convention; p = 1
  when every delta is zero, where scipy would refuse),
* win / tie / loss counts (|delta| <= 1e-9 is a tie).

Two-stage EPDMS is not a plain mean over tokens (stage two is weighted by the pseudo-closed-loop weights and
NAVSIM combines the stages afterwards), so the token-level statistics are over the row ``score`` and the
headline EPDMS numbers come from the two ``summary.json`` files. The two-stage EPDMS *is* a plain mean over
mappings (``aggregate_agent``: one value ``(s1_now * s2_now + s1_prev * s2_prev) / 2`` per mapping), and the
mappings are the independent units, so its interval comes from the same paired statistics over mappings
(``mapping_stats``): per-mapping scores from the summaries' ``mapping_scores``, or recomputed from the rows and
the split's mappings for summaries written before that field existed. One-stage EPDMS is the mean of the row
``score``, so there the token statistics of ``score`` already are the EPDMS statistics.

Comparing evaluations of different splits, scorer versions, traffic policies or aggregations would produce
numbers that look meaningful and are not, so :func:`compare_evaluations` refuses with an ``InputError`` that
names both files and the differing field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from evaluators.epdms.aggregate import mapping_score
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.errors import InputError
from irlvla_bench.types import StageMapping

SCHEMA = "irlvla-evaluation/v1"
METRICS: tuple[str, ...] = (*SUB_METRICS, "two_frame_extended_comfort", "score")
STAGES = ("all", "first", "second")
TIE_TOLERANCE = 1e-9
CONFIDENCE = 0.95
# Fields that must agree; aggregation is included because a one-stage and a two-stage run of the same split
# report differently defined EPDMS.
MUST_MATCH = ("split", "scorer_version", "traffic", "aggregation")
SUMMARY_SECTIONS = ("metrics", "stage_one", "stage_two")
SHORT_NAMES = {
    "no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC", "driving_direction_compliance": "DDC",
    "traffic_light_compliance": "TLC", "ego_progress": "EP", "time_to_collision_within_bound": "TTC",
    "lane_keeping": "LK", "history_comfort": "HC", "two_frame_extended_comfort": "EC", "score": "EPDMS",
}
_REQUIRED_COLUMNS = ("token", "log_name", "stage", "status", "poses", *METRICS)
_OPTIONAL_COLUMNS = {"frame_type": "", "error": ""}
MAPPING_FIELDS = ("now", "prev", "score", "stage_one_score", "stage_two_score")
# Summary EPDMS and the mean of its mapping scores must agree this closely, else the mappings are not the ones
# that were aggregated (e.g. the split file changed since the evaluation) and an interval would describe another
# quantity. Both are means of the same float64 numbers, so only summation order separates them.
MAPPING_EPDMS_TOLERANCE = 1e-9
# Seed-sequence tail of the mapping bootstrap stream. stats_table's streams are [seed, stage index (0..2), metric
# index]; a SeedSequence ignores trailing zero words, so only a stage index no stage has keeps this one apart.
_MAPPING_STREAM = (len(STAGES),)
# Rows of bootstrap indices drawn at once: bounds memory at ~4M indices whatever the number of tokens.
_BOOT_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Evaluation:
    """One evaluation folder as read: its summary and its row table."""

    path: Path
    summary: dict[str, Any]
    rows: pd.DataFrame

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def label(self) -> str:
        agent = self.summary.get("agent") or {}
        name = agent.get("name") if isinstance(agent, dict) else None
        return f"{name or 'agent'} ({self.path.name})"


@dataclass(frozen=True)
class EvaluationInfo:
    """What the report says about each side (everything but the rows)."""

    path: str
    label: str
    agent: dict[str, Any]
    split: str
    scorer_version: str
    traffic: str
    aggregation: str
    cache_dir: str | None
    num_tokens: int
    num_failed: int
    epdms: float
    config_hash: str | None
    git_commit: str | None


@dataclass(frozen=True)
class Comparison:
    """Result of :func:`compare_evaluations`; B is compared against A (delta = B - A)."""

    a: EvaluationInfo
    b: EvaluationInfo
    n_boot: int
    seed: int
    # One row per paired token: token, log_name, stage, frame_type, poses_a, poses_b, <metric>_a, <metric>_b,
    # <metric>_delta for every metric in METRICS.
    pairs: pd.DataFrame
    # One row per (metric, stage) with at least one paired finite value: metric, stage, n, mean_a, mean_b,
    # delta, ci_low, ci_high, p_value, wins, ties, losses.
    stats: pd.DataFrame
    # Split-level numbers from the two summaries: section (metrics/stage_one/stage_two), metric, a, b, delta.
    headline: pd.DataFrame
    epdms_a: float
    epdms_b: float
    top_gains: pd.DataFrame
    top_regressions: pd.DataFrame
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    failed_in_a: tuple[str, ...]  # present in both, not ok in A
    failed_in_b: tuple[str, ...]  # present in both, not ok in B
    notes: tuple[str, ...] = field(default=())
    # Two-stage only, None when skipped (the reason is in ``notes``): paired statistics of the per-mapping EPDMS
    # (n, mean_a, mean_b, delta, ci_low, ci_high, p_value, wins, ties, losses over the mappings with a finite
    # score in both), num_mappings_a/b, source_a/b (where each side's mapping scores came from) and ``mappings``
    # (one record per paired mapping: now, prev, score_a, score_b, score_delta).
    mapping_stats: dict[str, Any] | None = None

    @property
    def epdms_delta(self) -> float:
        return self.epdms_b - self.epdms_a

    @property
    def num_paired(self) -> int:
        return len(self.pairs)

    def stat(self, metric: str, stage: str = "all") -> pd.Series:
        """The statistics row of one metric and stage (KeyError when it has no paired values)."""
        hit = self.stats[(self.stats["metric"] == metric) & (self.stats["stage"] == stage)]
        if hit.empty:
            raise KeyError(f"no paired values for {metric!r} at stage {stage!r}")
        return hit.iloc[0]


# ----------------------------------------------------------------------------------------------------------------
# Reading


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(str(path), "<file>", "missing; expected an evaluation folder (docs/evaluation-schema.md)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(str(path), f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise InputError(str(path), "<root>", f"expected an object, got {type(data).__name__}")
    if data.get("schema") != SCHEMA:
        raise InputError(str(path), "schema", f"expected {SCHEMA!r}, got {data.get('schema')!r}")
    for key in (*MUST_MATCH, "epdms", "metrics"):
        if key not in data:
            raise InputError(str(path), key, "missing field")
    if not isinstance(data["epdms"], (int, float)) or isinstance(data["epdms"], bool):
        raise InputError(str(path), "epdms", f"expected a number, got {data['epdms']!r}")
    return data


def _read_rows(folder: Path) -> tuple[pd.DataFrame, Path]:
    parquet, csv = folder / "rows.parquet", folder / "rows.csv"
    if parquet.is_file():
        rows, source = pd.read_parquet(parquet), parquet
    elif csv.is_file():
        # The CSV is the same table; read tokens as text so hex tokens made of digits stay strings.
        rows = pd.read_csv(csv, dtype={"token": str, "log_name": str, "poses": str, "error": str},
                           keep_default_na=False, na_values={m: ["", "NaN", "nan"] for m in METRICS})
        source = csv
    else:
        raise InputError(str(parquet), "<file>", "missing (and no rows.csv beside it)")
    missing = [c for c in _REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise InputError(str(source), missing[0], f"missing column (also missing: {missing[1:]})" if missing[1:]
                         else "missing column")
    rows = rows.copy()
    for column, default in _OPTIONAL_COLUMNS.items():
        if column not in rows.columns:
            rows[column] = default
    for column in ("token", "log_name", "stage", "status", "frame_type"):
        rows[column] = rows[column].astype(str)
    for metric in METRICS:
        rows[metric] = pd.to_numeric(rows[metric], errors="coerce").astype(float)
    # weight and aggregated feed the per-mapping recomputation only; the CSV reader sees them as text.
    if "weight" in rows.columns:
        rows["weight"] = pd.to_numeric(rows["weight"], errors="coerce").astype(float)
    if "aggregated" in rows.columns:
        rows["aggregated"] = rows["aggregated"].astype(str).str.lower().isin(("true", "1"))
    duplicated = rows["token"][rows["token"].duplicated()]
    if not duplicated.empty:
        raise InputError(str(source), "token", f"{duplicated.iloc[0]!r} appears more than once (one row per token)")
    bad_stage = rows.loc[~rows["stage"].isin(STAGES[1:]), "stage"]
    if not bad_stage.empty:
        raise InputError(str(source), "stage", f"expected 'first' or 'second', got {bad_stage.iloc[0]!r}")
    return rows.reset_index(drop=True), source


def load_evaluation(folder: str | Path) -> Evaluation:
    """Read ``summary.json`` and ``rows.parquet`` (``rows.csv`` when the parquet is absent) of one folder."""
    folder = Path(folder)
    summary = _read_summary(folder / "summary.json")
    rows, _ = _read_rows(folder)
    return Evaluation(path=folder, summary=summary, rows=rows)


def _info(ev: Evaluation) -> EvaluationInfo:
    s = ev.summary
    agent = s.get("agent") if isinstance(s.get("agent"), dict) else {}
    return EvaluationInfo(
        path=str(ev.path), label=ev.label, agent=dict(agent), split=str(s["split"]),
        scorer_version=str(s["scorer_version"]), traffic=str(s["traffic"]), aggregation=str(s["aggregation"]),
        cache_dir=s.get("cache_dir"), num_tokens=int(s.get("num_tokens", len(ev.rows))),
        num_failed=int(s.get("num_failed", 0)), epdms=float(s["epdms"]), config_hash=s.get("config_hash"),
        git_commit=s.get("git_commit"),
    )


def check_comparable(a: Evaluation, b: Evaluation) -> None:
    """Refuse evaluations whose numbers do not mean the same thing (split, scorer, traffic, aggregation)."""
    for key in MUST_MATCH:
        if a.summary[key] != b.summary[key]:
            raise InputError(
                f"{a.summary_path} vs {b.summary_path}", key,
                f"the evaluations differ ({a.summary[key]!r} vs {b.summary[key]!r}); comparing them would mix "
                f"different {_WHY[key]}, so re-evaluate both with the same {key}",
            )


_WHY = {"split": "token sets", "scorer_version": "scorers", "traffic": "traffic behaviour",
        "aggregation": "EPDMS definitions"}


# ----------------------------------------------------------------------------------------------------------------
# Statistics (pure functions of arrays)


def bootstrap_mean_ci(deltas: np.ndarray, *, n_boot: int, rng: np.random.Generator,
                      confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of the mean of ``deltas`` under resampling with replacement (vectorised)."""
    deltas = np.asarray(deltas, dtype=float)
    n = deltas.size
    if n == 0:
        return math.nan, math.nan
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    means = np.empty(n_boot)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = deltas[index].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def wilcoxon_p(deltas: np.ndarray, *, tolerance: float = TIE_TOLERANCE) -> float:
    """Two-sided Wilcoxon signed-rank p-value; deltas within ``tolerance`` of zero count as zero.

    Floating-point noise (1e-16) must not become a ranked "difference", hence the snapping. scipy raises when
    every difference is zero; there is no evidence of a change then, so p = 1.
    """
    deltas = np.asarray(deltas, dtype=float)
    if deltas.size == 0:
        return math.nan
    snapped = np.where(np.abs(deltas) <= tolerance, 0.0, deltas)
    if not np.any(snapped):
        return 1.0
    return float(scipy_stats.wilcoxon(snapped, zero_method="wilcox", alternative="two-sided").pvalue)


def win_tie_loss(deltas: np.ndarray, *, tolerance: float = TIE_TOLERANCE) -> tuple[int, int, int]:
    """Counts of B better / equal within ``tolerance`` / worse than A."""
    deltas = np.asarray(deltas, dtype=float)
    wins = int(np.sum(deltas > tolerance))
    losses = int(np.sum(deltas < -tolerance))
    return wins, deltas.size - wins - losses, losses


def paired_stats(a: np.ndarray, b: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> dict[str, float]:
    """All paired statistics of one metric over the tokens where both values are finite."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    deltas = b - a
    low, high = bootstrap_mean_ci(deltas, n_boot=n_boot, rng=rng)
    wins, ties, losses = win_tie_loss(deltas)
    empty = deltas.size == 0
    return {
        "n": int(deltas.size),
        "mean_a": math.nan if empty else float(a.mean()),
        "mean_b": math.nan if empty else float(b.mean()),
        "delta": math.nan if empty else float(deltas.mean()),
        "ci_low": low, "ci_high": high,
        "p_value": wilcoxon_p(deltas),
        "wins": wins, "ties": ties, "losses": losses,
    }


# ----------------------------------------------------------------------------------------------------------------
# Comparison


def pair_rows(rows_a: pd.DataFrame, rows_b: pd.DataFrame, *, source: str = "<memory>") -> pd.DataFrame:
    """Tokens present and ok in both tables, side by side with per-metric deltas (B - A)."""
    ok_a = rows_a[rows_a["status"] == "ok"]
    ok_b = rows_b[rows_b["status"] == "ok"]
    keys = ["token", "log_name", "stage", "frame_type", "poses"]
    merged = ok_a[keys + list(METRICS)].merge(ok_b[keys + list(METRICS)], on="token", suffixes=("_a", "_b"),
                                              how="inner", validate="one_to_one")
    # Same split should mean the same stage per token; a mismatch means the row tables were not produced from
    # the same split definition even though the summaries say so.
    mismatch = merged[merged["stage_a"] != merged["stage_b"]]
    if not mismatch.empty:
        row = mismatch.iloc[0]
        raise InputError(source, "stage", f"token {row['token']!r} is stage {row['stage_a']!r} in A and "
                                          f"{row['stage_b']!r} in B")
    out = pd.DataFrame({
        "token": merged["token"], "log_name": merged["log_name_a"], "stage": merged["stage_a"],
        "frame_type": merged["frame_type_a"], "poses_a": merged["poses_a"], "poses_b": merged["poses_b"],
    })
    for metric in METRICS:
        out[f"{metric}_a"] = merged[f"{metric}_a"].to_numpy()
        out[f"{metric}_b"] = merged[f"{metric}_b"].to_numpy()
        out[f"{metric}_delta"] = out[f"{metric}_b"] - out[f"{metric}_a"]
    return out.sort_values("token", kind="stable").reset_index(drop=True)


def stats_table(pairs: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Paired statistics per metric and stage; (metric, stage) without any paired value are left out."""
    records = []
    for s_index, stage in enumerate(STAGES):
        subset = pairs if stage == "all" else pairs[pairs["stage"] == stage]
        for m_index, metric in enumerate(METRICS):
            # One independent stream per (stage, metric): a result does not depend on which others were asked.
            rng = np.random.default_rng([seed, s_index, m_index])
            values = paired_stats(subset[f"{metric}_a"].to_numpy(), subset[f"{metric}_b"].to_numpy(),
                                  n_boot=n_boot, rng=rng)
            if values["n"] == 0:
                continue
            records.append({"metric": metric, "stage": stage, **values})
    columns = ["metric", "stage", "n", "mean_a", "mean_b", "delta", "ci_low", "ci_high", "p_value",
               "wins", "ties", "losses"]
    return pd.DataFrame.from_records(records, columns=columns)


def headline_table(summary_a: dict[str, Any], summary_b: dict[str, Any]) -> pd.DataFrame:
    """Split-level numbers of both summaries side by side (NAVSIM's aggregation, not token means)."""
    records = []
    for section in SUMMARY_SECTIONS:
        sec_a, sec_b = summary_a.get(section), summary_b.get(section)
        if not isinstance(sec_a, dict) or not isinstance(sec_b, dict):
            continue
        for metric in METRICS:
            if metric not in sec_a or metric not in sec_b:
                continue
            va, vb = _number(sec_a[metric]), _number(sec_b[metric])
            records.append({"section": section, "metric": metric, "a": va, "b": vb, "delta": vb - va})
    return pd.DataFrame.from_records(records, columns=["section", "metric", "a", "b", "delta"])


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def changed_metrics(row: pd.Series) -> str:
    """Which sub-metrics moved for one paired token, e.g. ``NC 1→0, EP 0.81→0.62``."""
    parts = []
    for metric in METRICS[:-1]:
        a, b = row[f"{metric}_a"], row[f"{metric}_b"]
        if np.isfinite(a) and np.isfinite(b) and abs(b - a) > TIE_TOLERANCE:
            parts.append(f"{SHORT_NAMES[metric]} {a:.3g}→{b:.3g}")
    return ", ".join(parts)


def top_changes(pairs: pd.DataFrame, *, k: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``k`` largest score gains and the ``k`` largest regressions (ties excluded)."""
    columns = ["token", "log_name", "stage", "frame_type", "score_a", "score_b", "score_delta"]
    finite = pairs[np.isfinite(pairs["score_delta"])]
    gains = finite[finite["score_delta"] > TIE_TOLERANCE].sort_values(
        ["score_delta", "token"], ascending=[False, True], kind="stable").head(k)
    losses = finite[finite["score_delta"] < -TIE_TOLERANCE].sort_values(
        ["score_delta", "token"], ascending=[True, True], kind="stable").head(k)

    def table(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[columns].copy()
        out["changed"] = [changed_metrics(row) for _, row in frame.iterrows()]
        return out.reset_index(drop=True)

    return table(gains), table(losses)


# ----------------------------------------------------------------------------------------------------------------
# Two-stage EPDMS over mappings


def mapping_scores_from_rows(rows: pd.DataFrame, mappings: Sequence[StageMapping]) -> pd.DataFrame:
    """Per-mapping EPDMS of a row table, exactly as ``aggregate_agent`` computes ``MappingScore``'s ``score``.

    ``rows`` needs ``token``, ``score``, ``weight`` and ``aggregated`` (``ROW_COLUMNS`` of the evaluation
    summary). The rows hold each token's final row score and pseudo-closed-loop weight (after the last write of
    a token shared by several mappings), which is exactly the table ``aggregate_agent`` averages. A mapping with
    a token that is absent or not aggregated was dropped from the evaluation's aggregation, so it is left out
    here too. Returns one row per kept mapping, in the given order, with the columns of ``MAPPING_FIELDS``.
    """
    missing = [c for c in ("token", "score", "weight", "aggregated") if c not in rows.columns]
    if missing:
        raise ValueError(f"the row table lacks column(s) {missing}, needed to recompute mapping scores")
    used = rows[rows["aggregated"].astype(bool)]
    table = {t: {"score": float(s), "weight": float(w)} for t, s, w in zip(used["token"], used["score"],
                                                                          used["weight"])}
    records = []
    for mapping in mappings:
        tokens = [mapping.now, mapping.prev, *(t for pair in mapping.second_stage for t in pair)]
        if any(t not in table for t in tokens):
            continue
        records.append(mapping_score(mapping, table, ("score",)).score_record())
    return pd.DataFrame.from_records(records, columns=list(MAPPING_FIELDS))


def mapping_scores_from_summary(summary: dict[str, Any], *, source: str) -> pd.DataFrame | None:
    """``summary.json`` ``mapping_scores`` as a table (null -> NaN); None when the summary predates the field."""
    items = summary.get("mapping_scores")
    if items is None:
        return None
    if not isinstance(items, list):
        raise InputError(source, "mapping_scores", f"expected a list, got {type(items).__name__}")
    records = []
    for i, item in enumerate(items):
        where = f"mapping_scores[{i}]"
        if not isinstance(item, dict):
            raise InputError(source, where, f"expected an object, got {type(item).__name__}")
        for key in ("now", "prev"):
            if not isinstance(item.get(key), str):
                raise InputError(source, f"{where}.{key}", f"expected a token string, got {item.get(key)!r}")
        record = {"now": item["now"], "prev": item["prev"]}
        for key in MAPPING_FIELDS[2:]:
            value = item.get(key)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
                raise InputError(source, f"{where}.{key}", f"expected a number or null, got {value!r}")
            record[key] = math.nan if value is None else float(value)
        records.append(record)
    return pd.DataFrame.from_records(records, columns=list(MAPPING_FIELDS))


def split_mappings(summary: dict[str, Any], *, source: str = "summary.json") -> tuple[StageMapping, ...]:
    """The mappings of the summary's split read from its ``data_root``, as ``list_jobs`` builds a plan's."""
    from irlvla_bench.evaluation.plan import resolve_split  # the evaluation package is slow to import

    data_root = summary.get("data_root")
    if not isinstance(data_root, str) or not data_root:
        raise InputError(source, "data_root", f"expected a path, got {data_root!r}")
    spec = resolve_split(str(summary["split"]), data_root)
    return tuple(StageMapping(now, prev, tuple(tuple(p) for p in pairs)) for now, prev, pairs in spec.mappings)


def _epdms_mismatch(scores: pd.DataFrame, summary: dict[str, Any]) -> str:
    """Why these mapping scores are not the summary's aggregation ("" when they are)."""
    expected_n = summary.get("num_mappings")
    if isinstance(expected_n, int) and not isinstance(expected_n, bool) and expected_n != len(scores):
        return f"{len(scores)} mappings, but summary.json num_mappings is {expected_n}"
    finite = scores["score"].to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    mean = float(finite.mean()) if finite.size else math.nan
    if not abs(mean - float(summary["epdms"])) <= MAPPING_EPDMS_TOLERANCE:
        return f"their mean {mean!r} differs from summary.json epdms {summary['epdms']!r}"
    return ""


def evaluation_mapping_scores(ev: Evaluation) -> tuple[pd.DataFrame | None, str]:
    """(mapping scores, where they came from) of one two-stage evaluation, or (None, why they are unavailable)."""
    scores = mapping_scores_from_summary(ev.summary, source=str(ev.summary_path))
    if scores is not None:
        origin = f"{ev.summary_path} mapping_scores"
    else:
        try:
            mappings = split_mappings(ev.summary, source=str(ev.summary_path))
        except (InputError, OSError) as exc:
            return None, (f"{ev.summary_path} has no mapping_scores and the mappings of split "
                          f"{ev.summary['split']!r} could not be read ({exc})")
        if not mappings:
            return None, (f"{ev.summary_path} has no mapping_scores and split {ev.summary['split']!r} at "
                          f"{ev.summary.get('data_root')} defines no mappings")
        try:
            scores = mapping_scores_from_rows(ev.rows, mappings)
        except ValueError as exc:
            return None, f"{ev.path}: {exc}"
        origin = (f"recomputed from {ev.path}'s rows with the {len(mappings)} mappings of split "
                  f"{ev.summary['split']!r} at {ev.summary['data_root']}")
    mismatch = _epdms_mismatch(scores, ev.summary)
    if mismatch:
        return None, f"mapping scores {origin} do not reproduce the evaluation's EPDMS: {mismatch}"
    return scores, origin


def pair_mappings(scores_a: pd.DataFrame, scores_b: pd.DataFrame) -> pd.DataFrame:
    """Mappings present in both tables (matched on now, prev and occurrence), with ``score_delta = B - A``."""
    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        # A split may list the same (now, prev) twice; the k-th occurrence pairs with the k-th.
        return frame[["now", "prev", "score"]].assign(occurrence=frame.groupby(["now", "prev"]).cumcount())

    merged = keyed(scores_a).merge(keyed(scores_b), on=["now", "prev", "occurrence"], suffixes=("_a", "_b"),
                                   how="inner", validate="one_to_one")
    merged["score_delta"] = merged["score_b"] - merged["score_a"]
    return merged[["now", "prev", "score_a", "score_b", "score_delta"]].reset_index(drop=True)


def mapping_level_stats(scores_a: pd.DataFrame, scores_b: pd.DataFrame, *, n_boot: int,
                        seed: int) -> dict[str, Any]:
    """Paired statistics of the per-mapping EPDMS: its delta's bootstrap interval, Wilcoxon p, win/tie/loss."""
    pairs = pair_mappings(scores_a, scores_b)
    rng = np.random.default_rng([seed, *_MAPPING_STREAM])
    values = paired_stats(pairs["score_a"].to_numpy(), pairs["score_b"].to_numpy(), n_boot=n_boot, rng=rng)
    return {**values, "num_mappings_a": len(scores_a), "num_mappings_b": len(scores_b),
            "mappings": pairs.to_dict(orient="records")}


def _mapping_comparison(ev_a: Evaluation, ev_b: Evaluation, *, n_boot: int,
                        seed: int) -> tuple[dict[str, Any] | None, list[str]]:
    """``Comparison.mapping_stats`` and the notes that explain it (or why it is missing)."""
    if ev_a.summary["aggregation"] != "two_stage":
        return None, ["One-stage split: its EPDMS is the mean of the row `score`, so the token-level statistics of "
                      "`score` (stage all) already are the paired bootstrap of the EPDMS; there are no mappings."]
    scores_a, origin_a = evaluation_mapping_scores(ev_a)
    scores_b, origin_b = evaluation_mapping_scores(ev_b)
    if scores_a is None or scores_b is None:
        reasons = "; ".join(r for s, r in ((scores_a, origin_a), (scores_b, origin_b)) if s is None)
        return None, [f"No interval for the two-stage EPDMS over mappings: {reasons}."]
    stats = mapping_level_stats(scores_a, scores_b, n_boot=n_boot, seed=seed)
    stats.update(source_a=origin_a, source_b=origin_b)
    notes = [f"Two-stage EPDMS interval: paired bootstrap over the {stats['n']} mappings scored (finite) in both "
             f"evaluations, the independent units of the split (A: {origin_a}; B: {origin_b})."]
    if stats["n"] < max(len(scores_a), len(scores_b)):
        notes.append(f"{len(scores_a) - stats['n']} mapping(s) of A and {len(scores_b) - stats['n']} of B are not "
                     "scored in both and are left out of the mapping statistics, whose means then differ from "
                     "the summaries' EPDMS.")
    return stats, notes


def compare_evaluations(dir_a: str | Path, dir_b: str | Path, *, n_boot: int = 2000, seed: int = 0,
                        top_k: int = 10) -> Comparison:
    """Compare evaluation B against evaluation A token by token (see the module docstring)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    ev_a, ev_b = load_evaluation(dir_a), load_evaluation(dir_b)
    check_comparable(ev_a, ev_b)
    source = f"{ev_a.path / 'rows.parquet'} vs {ev_b.path / 'rows.parquet'}"
    pairs = pair_rows(ev_a.rows, ev_b.rows, source=source)

    tokens_a, tokens_b = set(ev_a.rows["token"]), set(ev_b.rows["token"])
    both = tokens_a & tokens_b
    failed_a = both & set(ev_a.rows.loc[ev_a.rows["status"] != "ok", "token"])
    failed_b = both & set(ev_b.rows.loc[ev_b.rows["status"] != "ok", "token"])
    info_a, info_b = _info(ev_a), _info(ev_b)
    top_gains, top_regressions = top_changes(pairs, k=top_k)

    notes = [
        "Token-level statistics (means, deltas, intervals, tests, win/tie/loss) are over the rows of rows.parquet; "
        "the EPDMS column there is the row `score`. Two-stage EPDMS is not a plain mean over tokens, so the "
        "headline EPDMS numbers come from the two summary.json files.",
    ]
    if info_a.num_failed or info_b.num_failed:
        notes.append(f"Failed tokens: {info_a.num_failed} in A, {info_b.num_failed} in B; the summaries' EPDMS "
                     "is over each side's scored tokens only, so the headline compares different token sets.")
    if tokens_a != tokens_b:
        notes.append(f"{len(tokens_a - tokens_b)} token(s) only in A and {len(tokens_b - tokens_a)} only in B "
                     "are left out of the paired statistics.")
    if len(pairs) == 0:
        notes.append("No token is ok in both evaluations: there are no paired statistics.")
    mapping_stats, mapping_notes = _mapping_comparison(ev_a, ev_b, n_boot=n_boot, seed=seed)
    notes += mapping_notes
    return Comparison(
        a=info_a, b=info_b, n_boot=n_boot, seed=seed, pairs=pairs,
        stats=stats_table(pairs, n_boot=n_boot, seed=seed),
        headline=headline_table(ev_a.summary, ev_b.summary),
        epdms_a=info_a.epdms, epdms_b=info_b.epdms,
        top_gains=top_gains, top_regressions=top_regressions,
        only_in_a=tuple(sorted(tokens_a - tokens_b)), only_in_b=tuple(sorted(tokens_b - tokens_a)),
        failed_in_a=tuple(sorted(failed_a)), failed_in_b=tuple(sorted(failed_b)),
        notes=tuple(notes), mapping_stats=mapping_stats,
    )
