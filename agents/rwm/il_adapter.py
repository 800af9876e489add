"""The IL policy's scene features as the ``il`` encoder's BEV input (imports ``agents.vla`` and torch lazily).

``agents.vla.model.IRLVLAModel.scene_features`` gives the fused BEV features (B, C, X, Y) on the policy's own
grid (rows index x); they are transposed to this package's convention (rows index y) and returned with the
matching ``GridConfig``, so the RWM's trajectory queries read them like any other BEV. The policy is frozen
here: the RWM learns on top of its features, it does not fine-tune them.

Checkpoints: a ``torch.save`` dict with ``config`` (``asdict(VLAConfig)``) and ``model`` (the state dict), as
``agents.vla`` writes them; an empty path gives a randomly initialised ``small`` policy (plumbing tests only).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.util import find_spec

import numpy as np

from agents.base import AgentInput
from agents.rwm.config import GridConfig


def il_available() -> bool:
    return find_spec("agents.vla") is not None and find_spec("agents.vla.model") is not None


@lru_cache(maxsize=2)
def load_il_model(checkpoint: str):
    import torch

    from agents.vla.config import config_from_dict, preset
    from agents.vla.model import IRLVLAModel

    if checkpoint:
        payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model = IRLVLAModel(config_from_dict(payload["config"]))
        model.load_state_dict(payload["model"])
    else:
        torch.manual_seed(0)
        model = IRLVLAModel(preset("small"))
    return model.eval()


def il_grid(checkpoint: str) -> GridConfig:
    bev = load_il_model(checkpoint).config.bev
    return GridConfig(x_range=tuple(bev.x_range), y_range=tuple(bev.y_range), resolution=bev.resolution)


def il_sensor_config(checkpoint: str):
    from agents.vla.data import sensor_config

    return sensor_config(load_il_model(checkpoint).config)


def il_bev(agent_input: AgentInput, checkpoint: str) -> np.ndarray:
    """(C, H=y, W=x) float32 BEV features of one scene from the frozen IL policy."""
    import torch

    from agents.vla.data import input_arrays
    from agents.vla.model import to_tensors

    model = load_il_model(checkpoint)
    arrays = {k: v[None] for k, v in input_arrays(agent_input, model.config).items()}
    with torch.no_grad():
        features = model.scene_features(to_tensors(arrays))
    return features.bev[0].transpose(1, 2).contiguous().numpy().astype(np.float32)
