"""Shared, process-wide cached fixtures for the ``test_vla_*`` modules: a tiny world, a test-sized model config,
its sample cache and a checkpoint trained for a few steps.

Plain ``lru_cache`` functions (as in ``test_data_fixtures``) so that every module reuses the same objects.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

SEED = 5


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_config():
    """The small preset shrunk further: two 16 x 32 cameras, a 16 x 16 BEV at 4 m, 16-wide heads; seconds per
    step on one core."""
    from agents.vla.config import (BackboneConfig, BEVConfig, CommandConfig, HeadsConfig, ImageConfig,
                                   PlannerConfig, TrainConfig, small_config)

    return replace(
        small_config(), name="test",
        backbone=BackboneConfig(arch="custom", stem=(8, 8, 16), stage_conv=(8, 8), stage_out=(16, 24),
                                layers_per_block=2, blocks_per_stage=(1, 2), num_stages=2, fuse_strides=(4, 8),
                                out_stride=4, neck_channels=16),
        image=ImageConfig(cameras=("CAM_F0", "CAM_L0"), height=16, width=32, crop_top=1.0 / 3.0),
        bev=BEVConfig(x_range=(-16.0, 48.0), y_range=(-32.0, 32.0), resolution=4.0, depth_range=(2.0, 50.0, 4.0),
                      channels=8, ground_prior_sigma=4.0, encoder_channels=(8, 16), token_stride=4),
        heads=HeadsConfig(d_model=16, num_heads=2, det_queries=30, det_layers=1, map_queries=4, map_points=4,
                          map_layers=1),
        command=CommandConfig(embed_dim=4, hidden=16),
        planner=PlannerConfig(num_anchors=4, d_model=16, num_heads=2, decoder_layers=2, read_segmentation=True),
        train=TrainConfig(epochs=2, batch_size=4, lr=1e-3, warmup_steps=2, num_threads=1, log_every=1,
                          time_budget_s=0.0),
    )


@lru_cache(maxsize=None)
def vla_world() -> Path:
    """A 2 test + 2 train log world of the ``tiny`` preset (navtrain, navtest, navhard_two_stage)."""
    from irlvla_bench.world import generate_world

    root = _tmpdir("irlvla_vla_world_") / "data"
    generate_world(root, 2, SEED, "tiny", train_logs=2)
    return root


@lru_cache(maxsize=None)
def sample_cache() -> Path:
    """The test config's cache root holding the navtrain samples."""
    from agents.vla.data import build_cache

    root = _tmpdir("irlvla_vla_cache_")
    build_cache(vla_world(), "navtrain", tiny_config(), root)
    return root


@lru_cache(maxsize=None)
def trained_run() -> Path:
    """A run folder of the test config trained for one epoch (model.pt, checkpoint.pt, train_log.csv)."""
    from agents.vla.train import train

    out = _tmpdir("irlvla_vla_run_")
    cfg = tiny_config()
    cfg = replace(cfg, train=replace(cfg.train, epochs=1))
    train(vla_world(), "navtrain", cfg, out, cache_dir=sample_cache(), progress=False, log=lambda msg: None)
    return out
