"""Procedural world written in NAVSIM's / nuPlan's on-disk formats (the embedded default dataset)."""

from irlvla_bench.world.config import PRESETS, WorldConfig, preset
from irlvla_bench.world.generate import WorldSummary, generate_world

__all__ = ["PRESETS", "WorldConfig", "WorldSummary", "generate_world", "preset"]
