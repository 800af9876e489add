"""The trajectory vocabulary of a training split: k-means over its expert trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from irlvla_bench.labelling.candidates import PerturbationConfig, fit_vocabulary
from irlvla_bench.labelling.label import list_cache


def training_trajectories(cache_dir: str | Path) -> np.ndarray:
    """(N, 8, 3) logged human futures of the cached original frames of a split (synthetic frames have none)."""
    from irlvla_bench.io.scoring_case import load_case

    futures = []
    for entry in list_cache(cache_dir):
        if entry.scene_type != "original":
            continue
        case = load_case(entry.path)
        if case.human_future is not None:
            futures.append(np.asarray(case.human_future, dtype=np.float64))
    if not futures:
        raise ValueError(f"{cache_dir}: no original frame with a human future to fit a vocabulary on")
    return np.stack(futures)


def vocabulary_from_cache(cache_dir: str | Path, size: int, *, seed: int = 0,
                          perturbation: PerturbationConfig = PerturbationConfig()) -> np.ndarray:
    """k-means vocabulary of ``size`` entries fitted on a cached training split's expert trajectories."""
    return fit_vocabulary(training_trajectories(cache_dir), size, seed=seed, perturbation=perturbation)
