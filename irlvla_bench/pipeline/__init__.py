"""The one-command pipeline: world -> cache -> IL -> labels -> RWM -> fidelity -> PPO -> evaluation ->
comparison -> leaderboard -> index page. Each stage is skipped when its output exists and is valid."""

from irlvla_bench.pipeline.config import PIPELINE_PRESETS, PipelineConfig, pipeline_preset
from irlvla_bench.pipeline.stages import StageResult, stage_is_valid

__all__ = ["PIPELINE_PRESETS", "PipelineConfig", "StageResult", "pipeline_preset", "stage_is_valid"]
