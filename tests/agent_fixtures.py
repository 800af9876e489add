"""Shared, process-wide cached fixtures for the ``test_agents_*`` modules: a tiny generated world with a
navtrain split, and an ego-MLP checkpoint trained on it (seconds).

Plain ``lru_cache`` functions (as in ``test_data_fixtures``) so that every module reuses the same world.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

SEED = 0
TINY_EPOCHS = 40


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@lru_cache(maxsize=None)
def agent_world() -> Path:
    """Root of a 2 test + 2 train log world of the ``tiny`` preset (navhard_two_stage, navtest, navtrain)."""
    from irlvla_bench.world import generate_world

    root = _tmpdir("irlvla_agents_world_") / "data"
    generate_world(root, 2, SEED, "tiny", train_logs=2)
    return root


@lru_cache(maxsize=None)
def ego_mlp_checkpoint() -> Path:
    """A tiny ego-MLP checkpoint trained on the world's navtrain split (single-threaded, seeded)."""
    import torch

    from agents.baselines.ego_mlp import EgoMLPConfig, TrainConfig, save_checkpoint, train_ego_mlp
    from agents.baselines.ego_mlp_data import training_set

    torch.set_num_threads(1)
    data = training_set(agent_world(), "navtrain")
    model, result = train_ego_mlp(data, EgoMLPConfig(hidden=32, layers=2), TrainConfig(epochs=TINY_EPOCHS))
    return save_checkpoint(_tmpdir("irlvla_ego_mlp_") / "ego_mlp.pt", model, result=result)


@lru_cache(maxsize=None)
def world_inputs() -> tuple:
    """Rich agent inputs (all sensors, scoring case) of one original and one synthetic navhard frame."""
    from agents.contract import contract_inputs

    return tuple(contract_inputs(agent_world(), "navhard_two_stage", max_scenes=2))
