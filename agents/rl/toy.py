"""A tiny PPO problem without data: a small planner on random scene features with straight-line anchors, and a
toy reward that prefers more progress. Used by the tests (learning signal, resume, two processes) and to try
settings in seconds."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from agents.rl.ppo import PPOPolicy, Problem
from agents.vla.config import BEVConfig, PlannerConfig
from agents.vla.model import SceneFeatures
from agents.vla.planner import TrajectoryPlanner

D_MODEL = 16
BEV_CHANNELS = 4
TOY_BEV = BEVConfig(x_range=(-16.0, 48.0), y_range=(-32.0, 32.0), resolution=4.0, channels=BEV_CHANNELS)
TOY_PLANNER = PlannerConfig(num_anchors=6, d_model=D_MODEL, num_heads=2, decoder_layers=2, ffn_mult=2)
TOY_SPEEDS = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0)  # m/s of the straight anchors


def toy_planner(seed: int = 0) -> TrajectoryPlanner:
    torch.manual_seed(seed)
    planner = TrajectoryPlanner(TOY_PLANNER, TOY_BEV, BEV_CHANNELS, D_MODEL)
    t = 0.5 * np.arange(1, TOY_PLANNER.num_poses + 1)
    anchors = np.zeros((TOY_PLANNER.num_anchors, TOY_PLANNER.num_poses, 3))
    anchors[:, :, 0] = np.asarray(TOY_SPEEDS)[:, None] * t
    planner.set_anchors(anchors)
    return planner.eval()


def toy_features(n: int, seed: int = 0) -> SceneFeatures:
    g = torch.Generator().manual_seed(seed)
    nx, ny = TOY_BEV.grid_shape()

    def randn(*shape):
        return torch.randn(shape, generator=g)

    empty = torch.zeros(n, 0)
    return SceneFeatures(bev=randn(n, BEV_CHANNELS, nx, ny), tokens=randn(n, 4, D_MODEL),
                         agent_queries=randn(n, 3, D_MODEL), map_queries=randn(n, 2, D_MODEL),
                         ego_token=randn(n, D_MODEL), seg_logits=empty, det_boxes=empty, det_logits=empty,
                         map_points=empty, map_logits=empty, speed_logits=empty, path_logits=empty, depth=empty)


def progress_reward(scenes: np.ndarray, poses: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Final longitudinal position / 40 m: more progress is better (so faster candidates and confidences in them)."""
    return np.asarray(poses)[..., -1, 0] / 40.0


def toy_setup(n_scenes: int = 8, seed: int = 0) -> tuple[PPOPolicy, TrajectoryPlanner, Problem]:
    """(policy to train, frozen reference planner, problem) with identical initial planners."""
    reference = toy_planner(seed)
    planner = toy_planner(seed)
    features = toy_features(n_scenes, seed)
    torch.manual_seed(seed + 1)
    policy = PPOPolicy(planner, features.pooled().shape[-1], hidden=32)
    return policy, reference, Problem(features=features, reward=progress_reward, exact_epdms=progress_reward)


def main(argv: list[str] | None = None) -> None:
    """``python -m agents.rl.toy OUT [ITERATIONS]`` (also under ``torchrun``): PPO on the toy problem; every
    process writes a checksum of its planner parameters to ``OUT/params-<rank>.txt`` (they must agree)."""
    import os
    import sys
    from pathlib import Path

    from agents.rl.ppo import Args, train

    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0])
    torch.set_num_threads(1)
    args = Args(iterations=int(argv[1]) if len(argv) > 1 else 3, scenes_per_iteration=4, samples_per_scene=2,
                num_minibatches=2, update_epochs=2, eval_every=0, learning_rate=1e-3, seed=0)
    policy, reference, problem = toy_setup(8)
    train(args, policy, reference, problem, out)
    rank = int(os.environ.get("RANK", "0"))
    checksum = sum(float(p.detach().double().abs().sum()) for p in policy.planner.parameters())
    (out / f"params-{rank}.txt").write_text(repr(checksum))


if __name__ == "__main__":
    main()


@lru_cache(maxsize=None)
def tiny_policy_checkpoint(folder: str | None = None) -> "Path":
    """A randomly initialised ``small`` IRL-VLA policy saved as an RL policy checkpoint (seconds, once per
    process; a temporary folder removed at exit unless ``folder`` is given): for the agent contract test, which
    checks the plumbing, not the driving."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path

    if folder is None:
        folder = tempfile.mkdtemp(prefix="irlvla_rl_tiny_")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)

    from agents.rl.world import save_policy
    from agents.vla.config import small_config
    from agents.vla.model import IRLVLAModel

    path = Path(folder) / "policy.pt"
    if not path.exists():
        torch.manual_seed(0)
        model = IRLVLAModel(small_config())
        t = 0.5 * np.arange(1, 9)
        anchors = np.zeros((model.config.planner.num_anchors, 8, 3))
        anchors[:, :, 0] = np.linspace(1.0, 12.0, len(anchors))[:, None] * t
        model.planner.set_anchors(anchors)
        save_policy(path, model, {"note": "random weights, contract tests only"})
    return path
