"""The full configuration (VoVNet-99, six cameras at 256 x 704, 128 x 128 BEV): builds with the published backbone
size and runs a forward and backward pass on CPU. Takes minutes, so it is opt-in: ``IRLVLA_FULL_TESTS=1``
(``bench/bench_vla_full.py`` prints the same numbers with timings)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("IRLVLA_FULL_TESTS") != "1",
                       reason="full-config forward/backward takes minutes on CPU; set IRLVLA_FULL_TESTS=1"),
]


def test_full_config_forward_backward_on_six_cameras():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_vla_full import fake_targets, rig_inputs

    from agents.vla.config import full_config
    from agents.vla.losses import total_loss
    from agents.vla.model import IRLVLAModel
    from agents.vla.vovnet import count_parameters

    torch.set_num_threads(2)
    config = full_config()
    assert config.image.height == 256 and config.image.width == 704 and len(config.image.cameras) == 6
    assert config.bev.grid_shape() == (128, 128) and config.bev.resolution == 0.5
    torch.manual_seed(0)
    model = IRLVLAModel(config).train()
    assert count_parameters(model.backbone) == 69_523_520
    batch = {**rig_inputs(config, 1, torch.device("cpu")), **fake_targets(config, 1, torch.device("cpu"))}
    features, out = model(batch, torch.Generator().manual_seed(0))
    assert features.bev.shape[-2:] == (128, 128)
    loss, parts = total_loss(model.planner, features, out, batch, config)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.backbone.parameters())
