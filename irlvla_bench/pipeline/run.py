"""Run the pipeline: each stage is a function of its settings and its upstream stages' outputs.

Layout under ``OUT``: ``world/`` (dataset), ``cache/<split>/`` (metric cache), ``models/<name>/``,
``labels/``, ``eval/<agent>/``, ``reports/<name>/``, ``leaderboard.sqlite``, ``index.html``. A stage whose
marker (``<dir>/.stage.json``) names the same inputs hash and whose outputs exist is skipped; a stage
interrupted half-way has no marker and runs again, and the steps it calls resume where they can
(caching, evaluation and labelling skip finished tokens).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from irlvla_bench.pipeline.config import PipelineConfig
from irlvla_bench.pipeline.stages import StageResult, stable_hash, stage_is_valid, write_marker

Log = Callable[[str], None]


@dataclass
class Context:
    out: Path
    config: PipelineConfig
    log: Log
    results: dict[str, StageResult] = field(default_factory=dict)

    @property
    def world(self) -> Path:
        return self.out / "world"

    @property
    def eval_cache(self) -> Path:
        return self.out / "cache" / "eval"

    def output(self, stage: str, key: str = "path") -> Path:
        return self.out / self.results[stage].details[key]

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out.resolve()))


@dataclass(frozen=True)
class Stage:
    name: str
    directory: str  # relative to OUT
    settings: Callable[[PipelineConfig], dict]
    upstream: tuple[str, ...]
    body: Callable[[Context, Path], tuple[list[str], dict]]  # -> (outputs relative to OUT, details)


def run_stage(ctx: Context, stage: Stage) -> StageResult:
    directory = ctx.out / stage.directory
    inputs_hash = stable_hash({"stage": stage.name, "settings": stage.settings(ctx.config),
                               "upstream": [ctx.results[u].inputs_hash for u in stage.upstream]})
    marker = stage_is_valid(directory, inputs_hash, ctx.out)
    if marker is not None:
        ctx.log(f"[skip] {stage.name}: output in {directory} is complete")
        result = StageResult(stage.name, directory, inputs_hash, tuple(marker["outputs"]), marker["seconds"], True,
                             marker.get("details", {}))
    else:
        ctx.log(f"[run ] {stage.name}")
        directory.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        outputs, details = stage.body(ctx, directory)
        seconds = time.perf_counter() - start
        write_marker(directory, stage.name, inputs_hash, outputs, seconds, details)
        ctx.log(f"[done] {stage.name} in {seconds:.1f} s")
        result = StageResult(stage.name, directory, inputs_hash, tuple(outputs), seconds, False, details)
    ctx.results[stage.name] = result
    return result


def run_pipeline(out: str | Path, config: PipelineConfig, *, log: Log = print,
                 stages: list[Stage] | None = None) -> dict[str, StageResult]:
    from irlvla_bench.pipeline.steps import pipeline_stages

    ctx = Context(Path(out), config, log)
    ctx.out.mkdir(parents=True, exist_ok=True)
    for stage in stages if stages is not None else pipeline_stages(config):
        run_stage(ctx, stage)
    return ctx.results


def settings_of(*parts) -> Callable[[PipelineConfig], dict]:
    """Settings a stage depends on, by attribute name of ``PipelineConfig``."""
    def pick(config: PipelineConfig) -> dict:
        return {name: (asdict(v) if hasattr(v, "__dataclass_fields__") else v)
                for name in parts for v in [getattr(config, name)]}
    return pick
