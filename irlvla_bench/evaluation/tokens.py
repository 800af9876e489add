"""The per-token function, the same in one process and in a Ray actor: plan (agent or submission lookup), store
the output, score it with the exact EPDMS (submission mode, the agent's trajectory as the only proposal), store
the score."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass

import numpy as np

from evaluators.epdms import score_frame
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.evaluation.plan import TokenJob
from irlvla_bench.evaluation.progress import ProgressStore
from irlvla_bench.evaluation.records import FAILED, OK, FrameRecord, TokenRecord
from irlvla_bench.types import Proposals, ScoringCase


@dataclass(frozen=True)
class WorkItem:
    job: TokenJob
    planned: TokenRecord | None = None  # agent output of an interrupted run, still to be scored


@dataclass(frozen=True)
class TokenContext:
    traffic: str
    label: str  # proposal id given to the agent's trajectory
    store: ProgressStore | None = None  # None: nothing is written (submission writing, tests)
    score: bool = True


def score_poses(case: ScoringCase, poses: np.ndarray, label: str, traffic: str) -> FrameRecord:
    proposals = Proposals(ids=(label,), poses=np.asarray(poses, dtype=np.float64)[None].copy(), labels=(label,))
    scores = score_frame(case.with_proposals(proposals), traffic=traffic, mode="submission")
    return FrameRecord(
        metrics={name: float(scores.metrics[name][0]) for name in SUB_METRICS},
        multiplicative=float(scores.multiplicative[0]),
        score_single_frame=float(scores.score_single_frame[0]),
        simulated_states=np.asarray(scores.simulated_states[0], dtype=np.float64),
        endpoint=np.asarray(scores.endpoints[0], dtype=np.float64),
        start_time_us=int(case.time_us),
        start_point=np.asarray(case.ego.rear_axle[:2], dtype=np.float64),
    )


def _record(job: TokenJob, status: str, **fields) -> TokenRecord:
    return TokenRecord(token=job.token, log_name=job.log_name, frame_type=job.frame_type, stage=job.stage,
                       status=status, **fields)


def _plan(planner, job: TokenJob, case: ScoringCase | None) -> TokenRecord:
    active = planner.ready()  # outside the boundary: an agent that cannot be built stops the run
    t0 = time.perf_counter()
    try:
        poses = active.plan(job, case)
    except Exception as exc:  # the one agent boundary: the token is reported with its traceback, the run goes on
        return _record(job, FAILED, seconds_agent=time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc())
    return _record(job, OK, poses=poses, seconds_agent=time.perf_counter() - t0)


def process_token(planner, item: WorkItem, ctx: TokenContext) -> TokenRecord:
    """Plan and score one token; every stage's result is stored before the next starts."""
    from irlvla_bench.io.scoring_case import load_case

    job = item.job
    if job.cache_error:
        return _record(job, FAILED, error=f"metric cache: {job.cache_error}")
    case = load_case(job.case_path) if ctx.score or planner.ready().requires_privileged else None
    record = item.planned
    if record is None:
        record = _plan(planner, job, case)
        if ctx.store is not None:
            ctx.store.write(record)
    if record.status == OK and ctx.score:
        record = record.with_scores(score_poses(case, record.poses, ctx.label, ctx.traffic))
        if ctx.store is not None:
            ctx.store.write(record)
    return record

