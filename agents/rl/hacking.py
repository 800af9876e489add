"""Reward-hacking check (issue 9, part 3): the RWM's predicted per-sub-metric values of two policies' trajectories
(e.g. the IL start A and its RL fine-tune B) next to the exact scorer's, on the same held-out tokens.

The trajectories are the ones an evaluation scored: read from two evaluation folders (``rows.parquet``, column
``poses``), or planned here from two checkpoints with the evaluation runner's per-token seeds (same outputs).
Both sides are valued under one definition, the per-frame label the RWM learns (``agents.rl.rewards``: the eight
sub-metrics after the human filter, ``extended_comfort`` against the expert's previous plan, ``epdms``), so the
predicted gain and the exact gain are directly comparable; ``reports.hacking.reward_hacking_table`` does the
arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from agents.rl.rewards import VALUE_NAMES, exact_values

HACKING_TABLE = "reward_hacking.csv"


@dataclass(frozen=True)
class HackingFrames:
    """Token-indexed values (columns ``VALUE_NAMES``) of policy A and B: RWM-predicted and exact."""

    rwm_a: pd.DataFrame
    rwm_b: pd.DataFrame
    exact_a: pd.DataFrame
    exact_b: pd.DataFrame

    def table(self, tolerance: float | None = None) -> pd.DataFrame:
        from reports.hacking import DEFAULT_TOLERANCE, reward_hacking_table

        return reward_hacking_table(self.rwm_a, self.rwm_b, self.exact_a, self.exact_b,
                                    tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
                                    metrics=list(VALUE_NAMES))


# ----------------------------------------------------------------------------------------------------------------
# Trajectories


def evaluation_poses(eval_dir: str | Path) -> dict[str, np.ndarray]:
    """token -> (8, 3) poses of every successfully planned token of an evaluation folder."""
    rows = pd.read_parquet(Path(eval_dir) / "rows.parquet", columns=["token", "status", "poses"])
    out = {}
    for token, status, poses in rows.itertuples(index=False):
        if status != "ok" or poses is None or (isinstance(poses, str) and not poses):
            continue
        value = json.loads(poses) if isinstance(poses, str) else poses
        out[str(token)] = np.asarray(np.stack(value) if isinstance(value, np.ndarray) else value, dtype=np.float64)
    return out


def policy_poses(checkpoint: str | Path, data_root: str | Path, split: str, tokens: Sequence[str] | None = None,
                 *, seed: int = 0) -> dict[str, np.ndarray]:
    """token -> (8, 3) poses of ``irlvla_rl:checkpoint`` on the frames of ``split`` (second-stage synthetic frames
    included), each planned with the seed the evaluation runner gives it."""
    from agents.base import restrict_input
    from agents.inputs import build_agent_input
    from agents.rl.agent import IRLVLARLAgent
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.evaluation.plan import list_jobs, resolve_split
    from irlvla_bench.evaluation.planners import token_seed

    agent = IRLVLARLAgent(checkpoint)
    agent.initialize()
    sensors = agent.sensor_config()
    plan = list_jobs(data_root, resolve_split(split, data_root), None)
    wanted = set(tokens) if tokens is not None else None
    out = {}
    for job in plan.jobs:
        if wanted is not None and job.token not in wanted:
            continue
        agent_input = build_agent_input(load_scene(job.ref), sensors, job.sensor_root)
        agent.seed(token_seed(seed, job.token))
        out[job.token] = np.asarray(agent.compute_trajectory(restrict_input(agent_input, sensors,
                                                                            privileged=False)).poses)
    return out


# ----------------------------------------------------------------------------------------------------------------
# Values


def cached_cases(cache_dir: str | Path, tokens: Sequence[str]) -> dict:
    """token -> ScoringCase from a metric cache folder (``cache_split``'s ``metadata.csv``)."""
    from irlvla_bench.io.scoring_case import load_case
    from irlvla_bench.labelling.label import list_cache

    wanted = set(tokens)
    return {e.token: load_case(e.path) for e in list_cache(cache_dir) if e.token in wanted}


def value_frames(poses: Mapping[str, np.ndarray], cases: Mapping, rwm=None) -> tuple[pd.DataFrame | None,
                                                                                          pd.DataFrame]:
    """(RWM-predicted, exact) token-indexed values of one trajectory per token (tokens without a case are
    skipped). ``rwm`` is an ``agents.rwm.predict.RewardModel`` or None (no prediction frame)."""
    predicted, exact = {}, {}
    for token, p in poses.items():
        case = cases.get(token)
        if case is None:
            continue
        values = exact_values(case, np.asarray(p)[None])
        exact[token] = {name: float(values[name][0]) for name in VALUE_NAMES}
        if rwm is not None:
            pred = rwm.predict(case, np.asarray(p, dtype=np.float32)[None], as_frame=False)
            predicted[token] = {name: float(pred[name][0]) for name in VALUE_NAMES}

    def frame(records: dict) -> pd.DataFrame:
        table = pd.DataFrame.from_dict(records, orient="index", columns=list(VALUE_NAMES))
        table.index.name = "token"
        return table

    return (frame(predicted) if rwm is not None else None), frame(exact)


def hacking_frames(poses_a: Mapping[str, np.ndarray], poses_b: Mapping[str, np.ndarray], cases: Mapping,
                   rwm) -> HackingFrames:
    common = sorted(set(poses_a) & set(poses_b) & set(cases))
    if not common:
        raise ValueError("no token has a trajectory of both policies and a scoring case")
    rwm_a, exact_a = value_frames({t: poses_a[t] for t in common}, cases, rwm)
    rwm_b, exact_b = value_frames({t: poses_b[t] for t in common}, cases, rwm)
    return HackingFrames(rwm_a, rwm_b, exact_a, exact_b)


def hacking_from_evaluations(eval_a: str | Path, eval_b: str | Path, rwm_checkpoint: str | Path,
                             cache_dir: str | Path) -> HackingFrames:
    """The four frames for the trajectories two evaluation folders scored (A = reference, B = under test)."""
    from agents.rwm.predict import RewardModel

    poses_a, poses_b = evaluation_poses(eval_a), evaluation_poses(eval_b)
    cases = cached_cases(cache_dir, sorted(set(poses_a) & set(poses_b)))
    return hacking_frames(poses_a, poses_b, cases, RewardModel.load(rwm_checkpoint))


def write_hacking(frames: HackingFrames, out_dir: str | Path, tolerance: float | None = None) -> pd.DataFrame:
    """The table (``reward_hacking.csv``) and the four frames (``hacking_{rwm,exact}_{a,b}.csv``) under out_dir."""
    from irlvla_bench.io.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = frames.table(tolerance)
    for name, frame in (("rwm_a", frames.rwm_a), ("rwm_b", frames.rwm_b), ("exact_a", frames.exact_a),
                        ("exact_b", frames.exact_b), ("table", table)):
        path = out / (HACKING_TABLE if name == "table" else f"hacking_{name}.csv")
        with atomic_path(path) as tmp:
            frame.to_csv(tmp)
    from irlvla_bench.io.atomic import write_text_atomic
    from reports.hacking import hacking_html, hacking_markdown

    write_text_atomic(out / "reward_hacking.md", hacking_markdown(table))
    write_text_atomic(out / "reward_hacking.html", hacking_html(table))
    return table
