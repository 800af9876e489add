"""Shared, process-wide cached fixtures for the ``test_data_*`` modules: one tiny generated world and its caches.

Plain ``lru_cache`` functions instead of pytest fixtures so that every module reuses the same world (a session
fixture imported into several modules would be rebuilt per module).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path

SEED = 11
N_LOGS = 2


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@lru_cache(maxsize=None)
def tiny_world():
    """(root, WorldSummary) of a 2-log world of the ``tiny`` preset (11 s logs, 32 x 18 images)."""
    from irlvla_bench.world import generate_world

    root = _tmpdir("irlvla_world_") / "data"
    summary = generate_world(root, N_LOGS, SEED, "tiny")
    return root, summary


@lru_cache(maxsize=None)
def cached_split(split: str):
    """(cache dir, CacheSummary) of one split of the tiny world, cached single-process."""
    from irlvla_bench.caching import cache_split

    root, _ = tiny_world()
    out = _tmpdir(f"irlvla_cache_{split}_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = cache_split(root, split, out)
    return out, summary
