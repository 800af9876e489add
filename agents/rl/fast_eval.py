"""Exact evaluation of PPO checkpoints without re-reading sensors, for model selection.

PPO freezes the perception trunk (``agents.rl.ppo``), so every fine-tune of one IL checkpoint sees the scene
features of that IL checkpoint. ``planner_poses`` runs only the planner on those features, cached once per split
(``agents.rl.world.cached_scene_set``), with the evaluation runner's per-token anchor-noise seeds: the poses are
the ones ``evaluate --agent irlvla_rl:CKPT`` gets (to float32 batching noise, tested against the agent).
``evaluate_poses`` scores them through the runner's NAVSIM-submission path, so the numbers are the runner's own.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def planner_poses(checkpoint: str | Path, scenes, *, seed: int = 0) -> dict[str, np.ndarray]:
    """token -> (8, 3) greedy plan of the checkpoint's planner on ``scenes`` (a ``SceneSet`` built with the IL
    trunk the checkpoint was fine-tuned from), each with the seed the runner gives that token."""
    from agents.rl.ppo import greedy_trajectories, select_features
    from agents.rl.world import load_policy_model
    from irlvla_bench.evaluation.planners import token_seed

    model, _ = load_policy_model(checkpoint)
    return {token: greedy_trajectories(model.planner, select_features(scenes.features, [i]), token_seed(seed, token))[0]
            for i, token in enumerate(scenes.tokens)}


def evaluate_poses(poses: dict[str, np.ndarray], name: str, data_root: str | Path, split: str,
                   cache_dir: str | Path, out_dir: str | Path) -> Path:
    """The runner's exact evaluation of ``poses`` (a NAVSIM submission of them) in ``out_dir``; an existing
    complete evaluation there is kept. Returns ``out_dir``."""
    from irlvla_bench.evaluation.plan import list_jobs, resolve_split
    from irlvla_bench.evaluation.runner import evaluate_submission
    from irlvla_bench.evaluation.submission import FIRST, SECOND, Team
    from irlvla_bench.io.atomic import atomic_path

    out = Path(out_dir)
    if (out / "summary.json").exists():
        return out
    plan = list_jobs(data_root, resolve_split(split, data_root), cache_dir)
    missing = [t for t in plan.tokens if t not in poses]
    if missing:
        raise ValueError(f"no poses for {len(missing)} token(s) of {split} (e.g. {missing[0]}): the scene set "
                         "left them out (too little history?)")
    stages = {stage: {t: np.asarray(poses[t], dtype=np.float64) for t in plan.stage_tokens(stage)}
              for stage in ("first", "second")}
    team = Team(name, "irlvla-bench", "bench@localhost", "irlvla-bench", "none")
    submission = {**team.as_keys(), FIRST: [stages["first"]], SECOND: [stages["second"]]}
    out.mkdir(parents=True, exist_ok=True)
    pkl = out.parent / f"{out.name}.submission.pkl"
    with atomic_path(pkl) as tmp:
        with open(tmp, "wb") as handle:
            pickle.dump(submission, handle)
    evaluate_submission(pkl, data_root, split, out_dir=out, cache_dir=cache_dir, agent_name=name)
    return out
