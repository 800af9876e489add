"""An ``il_sampler`` for the labeller (``irlvla_bench.labelling.candidates.ILSampler``): stochastic samples of an
IRL-VLA policy for a scoring case, so the RWM is also trained on the trajectories PPO will ask it to score.

Why: a learned reward is only trustworthy where it was trained. Vocabulary entries and expert perturbations do
not look like the policy's own candidates; PPO samples exactly those (and nearby ones), so the labels should hold
them too. The samples are drawn the way PPO draws them (``sample_with_log_probs``: every anchor's stochastic
denoising chain, exploration std ``min_std``).

The labeller only hands over the case, so the sampler finds the scene's sensors itself. Configure it through
the environment (the labeller imports it by name, possibly in another process)::

    IRLVLA_IL_SAMPLER_CHECKPOINT=il/model.pt IRLVLA_IL_SAMPLER_DATA=data IRLVLA_IL_SAMPLER_SPLIT=navtrain \
        irlvla-bench label ... --il-samples 32 --il-sampler agents.rl.samplers:il_sampler

``IRLVLA_IL_SAMPLER_MIN_STD`` (default 0.03, PPO's default) sets the exploration std.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np

ENV_CHECKPOINT = "IRLVLA_IL_SAMPLER_CHECKPOINT"
ENV_DATA = "IRLVLA_IL_SAMPLER_DATA"
ENV_SPLIT = "IRLVLA_IL_SAMPLER_SPLIT"
ENV_MIN_STD = "IRLVLA_IL_SAMPLER_MIN_STD"


@lru_cache(maxsize=4)
def _setup(checkpoint: str, data: str, split: str):
    from agents.rl.world import load_policy_model
    from agents.vla.data import split_scenes

    model, _ = load_policy_model(checkpoint)
    _, scenes = split_scenes(data, split)
    return model, {ref.token: (ref, root) for ref, root in scenes}


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"agents.rl.samplers.il_sampler needs the environment variable {name} (see its docstring)")
    return value


def policy_samples(model, agent_input, n: int, seed: int, min_std: float) -> np.ndarray:
    """(n, 8, 3) candidates of ceil(n / K) stochastic denoising chains of ``model`` on one input."""
    import torch

    from agents.vla.data import input_arrays
    from agents.vla.model import to_tensors

    k = model.config.planner.num_anchors
    chains = math.ceil(n / k)
    arrays = {key: np.repeat(value[None], chains, axis=0)
              for key, value in input_arrays(agent_input, model.config).items()}
    with torch.no_grad():
        features = model.scene_features(to_tensors(arrays))
        sample = model.planner.sample_with_log_probs(features, torch.Generator().manual_seed(seed), min_std=min_std)
    return sample.trajectories.reshape(-1, 8, 3)[:n].double().numpy()


def il_sampler(case, n: int, seed: int) -> np.ndarray:
    from agents.inputs import build_agent_input
    from agents.vla.data import sensor_config
    from irlvla_bench.caching.scene import load_scene

    model, refs = _setup(_required(ENV_CHECKPOINT), _required(ENV_DATA), os.environ.get(ENV_SPLIT, "navtrain"))
    if case.token not in refs:
        raise ValueError(f"il_sampler: token {case.token} is not a scene of the configured split")
    ref, root = refs[case.token]
    agent_input = build_agent_input(load_scene(ref), sensor_config(model.config), root)
    return policy_samples(model, agent_input, n, seed, float(os.environ.get(ENV_MIN_STD, "0.03")))
