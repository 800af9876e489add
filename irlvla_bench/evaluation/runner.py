"""Evaluate an agent (or a submission pickle) on a split with the exact EPDMS; see ``docs/evaluation-schema.md``.

Steps: make sure the split's metric cache exists (``cache_split``, resumable); for every frame the split needs
(second-stage synthetic frames included) build the agent input with the sensors the agent asks for (and the
scoring case only for privileged agents), call the agent, score its trajectory as the frame's only proposal in
submission mode; aggregate two-stage (navhard-style) or one-stage (navtest-style); write ``rows.parquet``,
``rows.csv`` and ``summary.json``.

* **Resume.** Each token's agent output, then its score, is written to ``<out>/progress/`` as it is produced; a
  rerun with the same configuration skips what is there and never calls the agent for it again. The final files
  are written atomically (summary last) and ``progress/`` is removed.
* **Seeds.** Before each token the agent is seeded with a hash of (seed, token), so a token's output does not
  depend on the order, the sharding over workers or an interruption.
* **Failures.** An agent that raises on a token is recorded with its traceback (summary ``failed``, row
  ``status=failed``), never as a zero row; two-stage mappings touching such a token leave the aggregation and
  are listed in ``dropped_mappings``.
* **Workers.** ``workers > 1`` runs the same per-token function on Ray actors (one agent per actor), one
  machine: progress files are written by the actors to ``<out>``. Actors build the agent from its spec, so a
  name must be registered by an importable module (``agents/registered.py``); an ``Agent`` instance is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from agents.base import Agent
from irlvla_bench.evaluation.execute import local_planner, parallel_session, run_items
from irlvla_bench.evaluation.plan import EvaluationPlan, default_cache_dir, prepare_plan, resolve_split
from irlvla_bench.evaluation.planners import AgentSource, LookupSource, check_agent_name
from irlvla_bench.evaluation.progress import ProgressStore
from irlvla_bench.evaluation.provenance import checkpoint_sha256, config_hash, evaluation_config
from irlvla_bench.evaluation.records import OK, TokenRecord
from irlvla_bench.evaluation.summary import aggregate, build_summary
from irlvla_bench.evaluation.tokens import TokenContext, WorkItem
from irlvla_bench.io.atomic import atomic_path, write_json_atomic
from irlvla_bench.io.splits import SplitSpec

# progress(token, done, total); token is None for the first call, which counts tokens already done (resume).
ProgressCallback = Callable[[str | None, int, int], None]


class EvaluationConfigError(ValueError):
    """An argument the run cannot start with (unknown traffic policy, workers < 1)."""


@dataclass
class EvaluationResult:
    out_dir: Path
    summary: dict
    rows: pd.DataFrame

    @property
    def epdms(self) -> float | None:
        return self.summary["epdms"]

    @property
    def failed(self) -> list[dict]:
        return self.summary["failed"]

    @property
    def ok(self) -> bool:
        return self.summary["num_failed"] == 0


def _check_traffic(traffic: str) -> None:
    from evaluators.epdms import available_policies

    if traffic not in available_policies():
        known = ", ".join(available_policies())
        raise EvaluationConfigError(f"unknown traffic policy {traffic!r}; available: {known}")


def _execute(source, plan: EvaluationPlan, ctx: TokenContext, store: ProgressStore | None, *, workers: int,
             progress: ProgressCallback | None, planner=None) -> list[TokenRecord]:
    existing = store.load() if store is not None else {}
    records: dict[str, TokenRecord] = {}
    items = []
    for job in plan.jobs:
        previous = existing.get(job.token)
        if previous is not None and previous.complete:
            records[job.token] = previous
        else:
            items.append(WorkItem(job, previous if previous is not None and previous.status == OK else None))
    total = len(plan.jobs)
    if progress is not None:
        progress(None, len(records), total)

    def on_result(record: TokenRecord) -> None:
        records[record.token] = record
        if progress is not None:
            progress(record.token, len(records), total)

    run_items(source, items, ctx, workers=workers, on_result=on_result, planner=planner)
    return [records[job.token] for job in plan.jobs]


def _write_outputs(out: Path, rows: pd.DataFrame, summary: dict) -> None:
    with atomic_path(out / "rows.parquet") as tmp:
        rows.to_parquet(tmp, index=False)
    with atomic_path(out / "rows.csv") as tmp:
        rows.to_csv(tmp, index=False)
    # Last: a summary.json on disk means the run completed.
    write_json_atomic(out / "summary.json", summary, indent=2)


def _run(source, *, agent: dict, identity: dict, source_info: dict, label: str, data_root, split, traffic: str,
         workers: int, out_dir, cache_dir, seed: int, progress: ProgressCallback | None) -> EvaluationResult:
    _check_traffic(traffic)
    if workers < 1:
        raise EvaluationConfigError(f"workers must be >= 1, got {workers}")
    spec = resolve_split(split, data_root)
    out = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir(out, spec.name)
    chash = config_hash(evaluation_config(split=spec.name, traffic=traffic, agent=identity, seed=seed))
    planner = local_planner(source, workers)
    store = ProgressStore(str(out / "progress"))
    store.open({"config_hash": chash, "data_root": str(Path(data_root).absolute()),
                "cache_dir": str(cache.absolute())})
    ctx = TokenContext(traffic=traffic, label=label, store=store)
    with parallel_session(workers):
        plan = prepare_plan(data_root, spec, cache, workers=workers)
        records = _execute(source, plan, ctx, store, workers=workers, progress=progress, planner=planner)
    if isinstance(source, LookupSource):
        # Predictions for tokens the split does not have: NAVSIM's server would fail on them; say so.
        source_info = {**source_info, "unknown_tokens": sorted(set(source.predictions) - set(plan.tokens))}
    aggregation = aggregate(records, plan)
    summary = build_summary(plan=plan, aggregation=aggregation, records=records, traffic=traffic, agent=agent,
                            seed=seed, config_hash=chash, data_root=str(Path(data_root).absolute()),
                            source=source_info, created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _write_outputs(out, aggregation.rows, summary)
    store.remove()
    return EvaluationResult(out, summary, aggregation.rows)


def evaluate_agent(agent_spec: str | Agent, data_root: str | Path, split: str | SplitSpec, *,
                   traffic: str = "log_replay", workers: int = 1, out_dir: str | Path,
                   cache_dir: str | Path | None = None, seed: int = 0,
                   progress: ProgressCallback | None = None) -> EvaluationResult:
    """Run ``agent_spec`` (``NAME[:CHECKPOINT]`` or an ``Agent``) on every frame of ``split`` and score it; see the
    module docstring. The metric cache defaults to ``<out_dir>/../metric_cache/<split>``."""
    check_agent_name(agent_spec)
    source = AgentSource(agent_spec, seed)
    checkpoint = source.checkpoint
    if checkpoint is not None and Path(checkpoint).exists():
        checkpoint = str(Path(checkpoint).absolute())  # the summary must still point at it from elsewhere
    sha = checkpoint_sha256(checkpoint)
    agent = {"name": source.name, "checkpoint": checkpoint, "checkpoint_sha256": sha}
    spec_text = agent_spec if isinstance(agent_spec, str) else f"<{type(agent_spec).__name__} instance>"
    return _run(source, agent=agent, identity={"name": source.name, "checkpoint_sha256": sha},
                source_info={"kind": "agent", "spec": spec_text}, label=source.name, data_root=data_root, split=split,
                traffic=traffic, workers=workers, out_dir=out_dir, cache_dir=cache_dir, seed=seed, progress=progress)


def evaluate_submission(pickle_path: str | Path, data_root: str | Path, split: str | SplitSpec, *,
                        traffic: str = "log_replay", workers: int = 1, out_dir: str | Path,
                        cache_dir: str | Path | None = None, seed: int = 0, agent_name: str | None = None,
                        progress: ProgressCallback | None = None) -> EvaluationResult:
    """Score the predictions of a NAVSIM submission pickle exactly as ``evaluate_agent`` scores an agent (the
    agent call is replaced by a lookup; a token without a prediction is a failed token)."""
    from irlvla_bench.evaluation.provenance import sha256_file
    from irlvla_bench.evaluation.submission import load_submission, submission_predictions

    submission = load_submission(pickle_path)
    predictions = submission_predictions(submission)
    sha = sha256_file(pickle_path)
    name = agent_name or str(submission["team_name"])
    source_info = {"kind": "submission", "path": str(Path(pickle_path).absolute()), "sha256": sha,
                   "team_name": submission["team_name"]}
    return _run(LookupSource(predictions), agent={"name": name, "checkpoint": None, "checkpoint_sha256": None},
                identity={"name": name, "submission_sha256": sha}, source_info=source_info, label=name,
                data_root=data_root, split=split, traffic=traffic, workers=workers, out_dir=out_dir,
                cache_dir=cache_dir, seed=seed, progress=progress)


__all__ = ["EvaluationConfigError", "EvaluationResult", "ProgressCallback", "evaluate_agent",
           "evaluate_submission"]
