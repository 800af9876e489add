"""Exact EPDMS labels of candidate trajectories: one Parquet shard per scene, sharded over Ray, resumable.

Layout of a label folder::

    labels_config.json   what was labelled and how (a resume with a different config is refused)
    vocabulary.npy       the (K, 8, 3) vocabulary the candidates were drawn from
    shards/<log>/<token>.parquet   one row per candidate (see ``label_case``)
    label_summary.json   counts, seconds, throughput, label balance

A shard is written to a temporary file and renamed into place, so a killed run leaves either a complete shard
or none; resuming skips complete shards and redoes the rest, which loses and duplicates nothing. Candidates
and labels are pure functions of (case, config, vocabulary), so labelling a scene twice, in any process, gives
identical rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from evaluators.epdms import SCORER_VERSION, score_frame
from evaluators.epdms.config import NAVSIM_V2
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.errors import InputError
from irlvla_bench.io.atomic import atomic_path, write_json_atomic
from irlvla_bench.labelling.candidates import CandidateConfig, build_candidates
from irlvla_bench.labelling.epdms import EXTENDED_COMFORT, epdms, extended_comfort_labels
from irlvla_bench.labelling.scene_kind import scene_kind
from irlvla_bench.types import Proposals, ScoringCase

LABEL_SCHEMA = "irlvla-rwm-labels/v1"
SHARD_DIR = "shards"
SHARD_SUFFIX = ".parquet"
POSE_COLUMNS = tuple(f"pose_{k}_{c}" for k in range(8) for c in ("x", "y", "h"))
RAW_PREFIX = "raw_"  # sub-metrics before the human filter (what a trajectory's geometry alone decides)
HUMAN_PREFIX = "human_"  # the human trajectory's own metrics (the filter's input; NaN for synthetic frames)
TARGET_COLUMNS = SUB_METRICS + (EXTENDED_COMFORT,)


@dataclass(frozen=True)
class LabelConfig:
    candidates: CandidateConfig = field(default_factory=CandidateConfig)
    traffic: str = "log_replay"
    chunk: int = 4096  # proposals per exact-scorer call (bounds memory; rows are independent)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LabelConfig":
        from irlvla_bench.dataclass_dict import dataclass_from_dict

        return dataclass_from_dict(cls, data)


# ----------------------------------------------------------------------------------------------------------------
# One scene


def label_case(case: ScoringCase, vocabulary: np.ndarray, config: LabelConfig, *, case_file: str = "",
               il_sampler=None) -> pd.DataFrame:
    """Candidates of ``case`` labelled by the exact scorer in labelling mode, one row per candidate.

    Columns: scene identity (token, log_name, scene_type, scene_kind, case_file), candidate identity
    (candidate_index, candidate_id, source, source_index), the 24 pose columns, every sub-metric after the human
    filter, ``raw_*`` before it, ``extended_comfort``, ``multiplicative``, ``epdms`` (with EC, the weights of
    the evaluator), ``score_single_frame`` (navtest-style, without EC), ``progress_m``, the reference's
    ``reference_progress_m`` / ``reference_multiplicative`` and the human's metrics ``human_*``.
    """
    cands = build_candidates(case, vocabulary, config.candidates, il_sampler)
    n = len(cands)
    ids = cands.ids
    parts = []
    for start in range(0, n, config.chunk):
        stop = min(start + config.chunk, n)
        sub = case.with_proposals(Proposals(ids[start:stop], cands.poses[start:stop]))
        parts.append(score_frame(sub, traffic=config.traffic, mode="labelling"))

    def cat(get) -> np.ndarray:
        return np.concatenate([get(p) for p in parts]) if parts else np.zeros(0)

    metrics = {m: cat(lambda p, m=m: p.metrics[m]) for m in SUB_METRICS}
    states = cat(lambda p: p.simulated_states)
    ec = extended_comfort_labels(case, states.reshape(n, 41, 11), NAVSIM_V2) if n else np.zeros(0)
    single = cat(lambda p: p.score_single_frame)
    total = epdms(metrics, np.nan_to_num(ec, nan=0.0), NAVSIM_V2)

    table = {
        "token": [case.token] * n,
        "log_name": [case.log_name] * n,
        "scene_type": [case.scene_type] * n,
        "scene_kind": [scene_kind(case)] * n,
        "case_file": [case_file] * n,
        "candidate_index": np.arange(n, dtype=np.int64),
        "candidate_id": list(ids),
        "source": list(cands.sources),
        "source_index": cands.source_index,
    }
    flat = cands.poses.reshape(n, 24)
    for j, name in enumerate(POSE_COLUMNS):
        table[name] = flat[:, j]
    for m in SUB_METRICS:
        table[m] = metrics[m]
    table[EXTENDED_COMFORT] = ec
    table["multiplicative"] = cat(lambda p: p.multiplicative)
    table["epdms"] = np.where(np.isnan(ec), single, total)
    table["score_single_frame"] = single
    for m in SUB_METRICS:
        table[RAW_PREFIX + m] = cat(lambda p, m=m: p.unfiltered[m])
    table["progress_m"] = cat(lambda p: p.progress_m)
    table["reference_progress_m"] = cat(lambda p: p.reference_progress_m)
    table["reference_multiplicative"] = cat(lambda p: p.reference_multiplicative)
    human = parts[0].human if parts else None
    for m in SUB_METRICS:
        table[HUMAN_PREFIX + m] = np.full(n, float(human[m][0]) if human is not None else np.nan)
    return pd.DataFrame(table)


# ----------------------------------------------------------------------------------------------------------------
# A split


@dataclass(frozen=True)
class SceneEntry:
    token: str
    log_name: str
    scene_type: str
    path: str  # absolute path of the cached case


@dataclass(frozen=True)
class SceneOutcome:
    token: str
    log_name: str
    status: str  # "labelled" | "skipped" | "failed"
    rows: int = 0
    seconds: float = 0.0
    reason: str = ""


def shard_path(out_dir: str | Path, log_name: str, token: str) -> Path:
    return Path(out_dir) / SHARD_DIR / log_name / f"{token}{SHARD_SUFFIX}"


def list_cache(cache_dir: str | Path) -> list[SceneEntry]:
    """The cached cases of a ``cache_split`` folder (its ``metadata.csv``), in listing order."""
    cache = Path(cache_dir)
    meta = cache / "metadata.csv"
    if not meta.exists():
        raise InputError(str(meta), "<file>", "not a cache directory (metadata.csv missing)")
    with open(meta, newline="") as handle:
        return [SceneEntry(r["token"], r["log_name"], r["scene_type"], str((cache / r["path"]).resolve()))
                for r in csv.DictReader(handle)]


@lru_cache(maxsize=4)
def _vocabulary(path: str) -> np.ndarray:
    return np.load(path)


def write_shard(table: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)


def label_one(entry: SceneEntry, out_dir: str, config_json: str, vocab_path: str, overwrite: bool) -> SceneOutcome:
    """Label one cached scene into its shard; bad input becomes a failed outcome with the reason."""
    from irlvla_bench.io.scoring_case import load_case

    target = shard_path(out_dir, entry.log_name, entry.token)
    if target.exists() and not overwrite:
        return SceneOutcome(entry.token, entry.log_name, "skipped")
    t0 = time.perf_counter()
    config = LabelConfig.from_dict(json.loads(config_json))
    try:
        case = load_case(entry.path)
        table = label_case(case, _vocabulary(vocab_path), config, case_file=entry.path)
    except (InputError, ValueError) as exc:
        return SceneOutcome(entry.token, entry.log_name, "failed", reason=f"{type(exc).__name__}: {exc}")
    write_shard(table, target)
    return SceneOutcome(entry.token, entry.log_name, "labelled", len(table), time.perf_counter() - t0)


def label_batch(entries: list[SceneEntry], out_dir: str, config_json: str, vocab_path: str,
                overwrite: bool) -> list[SceneOutcome]:
    return [label_one(e, out_dir, config_json, vocab_path, overwrite) for e in entries]


def _vocab_digest(vocabulary: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(vocabulary, dtype=np.float64).tobytes()).hexdigest()[:16]


def _prepare_out(out: Path, vocabulary: np.ndarray, config: LabelConfig, meta: dict, overwrite: bool) -> Path:
    """Write (or check) the folder's config and vocabulary; refuse to mix labels of different configs."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"schema": LABEL_SCHEMA, "scorer_version": SCORER_VERSION, "config": config.to_dict(),
              "vocabulary_sha": _vocab_digest(vocabulary), "vocabulary_size": int(len(vocabulary)), **meta}
    record = json.loads(json.dumps(record))  # tuples as lists, as the file holds them
    config_path = out / "labels_config.json"
    if config_path.exists() and not overwrite:
        old = json.loads(config_path.read_text())
        keys = ("schema", "scorer_version", "config", "vocabulary_sha")
        changed = [k for k in keys if old.get(k) != record[k]]
        if changed:
            raise InputError(str(config_path), changed[0], "differs from this run's; label into a new folder or "
                             "pass overwrite to relabel everything")
    vocab_path = out / "vocabulary.npy"
    with atomic_path(vocab_path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vocabulary, dtype=np.float64))
    write_json_atomic(config_path, record, indent=2)
    # Temporary files of a killed run are never read (readers glob *.parquet); clearing them keeps the folder tidy.
    for stale in (out / SHARD_DIR).glob(f"*/.*{SHARD_SUFFIX}.*.tmp"):
        stale.unlink(missing_ok=True)
    return vocab_path


@dataclass
class LabelSummary:
    out_dir: str
    outcomes: list[SceneOutcome]
    seconds: float
    workers: int
    balance: dict

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    def to_dict(self) -> dict:
        new_rows = sum(o.rows for o in self.outcomes if o.status == "labelled")
        busy = sum(o.seconds for o in self.outcomes if o.status == "labelled")
        return {
            "out_dir": self.out_dir, "workers": self.workers, "seconds": round(self.seconds, 3),
            "scenes": len(self.outcomes), "labelled": self.count("labelled"), "skipped": self.count("skipped"),
            "failed": self.count("failed"), "rows_labelled": new_rows,
            # Per worker (candidates per busy second, loading and writing included) and end to end.
            "trajectories_per_s_per_worker": round(new_rows / busy, 1) if busy else None,
            "trajectories_per_s_wall": round(new_rows / self.seconds, 1) if self.seconds and new_rows else None,
            "failures": [{"token": o.token, "log_name": o.log_name, "reason": o.reason}
                         for o in self.outcomes if o.status == "failed"],
            "balance": self.balance,
        }


def label_balance(out_dir: str | Path) -> dict:
    """Per source and overall: rows, and the mean / fraction-below-1 of every target (read from all shards)."""
    table = load_labels(out_dir, columns=("source",) + TARGET_COLUMNS + ("epdms",))
    if table.empty:
        return {}

    def stats(frame: pd.DataFrame) -> dict:
        out = {"rows": int(len(frame))}
        for name in TARGET_COLUMNS + ("epdms",):
            values = frame[name].to_numpy(dtype=float)
            out[name] = {"mean": round(float(np.nanmean(values)), 4),
                         "below_1": round(float(np.nanmean(values < 1.0)), 4)}
        return out

    result = {"all": stats(table)}
    for source, frame in table.groupby("source", sort=True):
        result[str(source)] = stats(frame)
    return result


def label_split(cache_dir: str | Path, out_dir: str | Path, vocabulary: np.ndarray, config: LabelConfig, *,
                workers: int = 1, overwrite: bool = False, progress: bool = False, batch_size: int = 2,
                tokens: list[str] | None = None, meta: dict | None = None,
                on_progress: Callable[[int, int], None] | None = None) -> LabelSummary:
    """Label every cached scene of ``cache_dir`` into ``out_dir`` (see the module docstring)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    entries = list_cache(cache_dir)
    if tokens is not None:
        keep = set(tokens)
        entries = [e for e in entries if e.token in keep]
    vocab_path = str(_prepare_out(out, vocabulary, config, {"cache_dir": str(Path(cache_dir).resolve()),
                                                             **(meta or {})}, overwrite))
    config_json = json.dumps(config.to_dict())
    total = len(entries)
    outcomes: list[SceneOutcome] = []

    def run(tick: Callable[[list[SceneOutcome], int], None]) -> None:
        if workers > 1 and total > 1:
            from irlvla_bench.parallel import map_batches

            batches = [entries[i:i + batch_size] for i in range(0, total, batch_size)]
            map_batches(label_batch, batches, (str(out), config_json, vocab_path, overwrite), workers=workers,
                        on_batch=tick)
        else:
            for entry in entries:
                tick([label_one(entry, str(out), config_json, vocab_path, overwrite)], 1)

    def record(results: list[SceneOutcome], advance: Callable[[int], None]) -> None:
        outcomes.extend(results)
        advance(len(results))
        if on_progress:
            on_progress(len(outcomes), total)

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[rate]}")) as bar:
            task = bar.add_task("label", total=total, rate="")

            def advance(k: int) -> None:
                rows = sum(o.rows for o in outcomes)
                busy = sum(o.seconds for o in outcomes)
                bar.update(task, advance=k, rate=f"{rows / busy:.0f} traj/s/worker" if busy else "")

            run(lambda results, _: record(results, advance))
    else:
        run(lambda results, _: record(results, lambda k: None))
    order = {e.token: i for i, e in enumerate(entries)}
    outcomes.sort(key=lambda o: order[o.token])
    summary = LabelSummary(str(out), outcomes, time.perf_counter() - t0, workers, label_balance(out))
    write_json_atomic(out / "label_summary.json", summary.to_dict(), indent=2)
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Reading


def shard_files(out_dir: str | Path) -> list[Path]:
    return sorted((Path(out_dir) / SHARD_DIR).glob(f"*/*{SHARD_SUFFIX}"))


def load_labels(out_dir: str | Path, columns: tuple[str, ...] | None = None,
                tokens: set[str] | None = None) -> pd.DataFrame:
    """All shards of a label folder as one DataFrame (shards in sorted path order, rows in candidate order)."""
    import pyarrow.parquet as pq

    files = shard_files(out_dir)
    if tokens is not None:
        files = [f for f in files if f.stem in tokens]
    if not files:
        return pd.DataFrame(columns=list(columns) if columns else None)
    return pd.concat([pq.read_table(f, columns=list(columns) if columns else None).to_pandas() for f in files],
                     ignore_index=True)


def load_vocabulary(out_dir: str | Path) -> np.ndarray:
    return np.load(Path(out_dir) / "vocabulary.npy")


def load_label_config(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / "labels_config.json").read_text())


def poses_of(table: pd.DataFrame) -> np.ndarray:
    """(N, 8, 3) candidate poses of label rows."""
    return table[list(POSE_COLUMNS)].to_numpy(dtype=np.float64).reshape(-1, 8, 3)
