"""What a split asks of an agent: every frame to plan for (first-stage originals and second-stage synthetic
frames), where its sensors and its scoring case live, and the navhard mappings that aggregate them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from irlvla_bench.io.splits import DataPaths, SceneRef, SplitSpec, list_scenes, load_split
from irlvla_bench.types import StageMapping


@dataclass(frozen=True)
class TokenJob:
    """One frame to plan and score. ``cache_error`` is set when its scoring case could not be cached (the frame
    is then reported as failed without calling the agent: it could not be scored anyway)."""

    ref: SceneRef
    stage: str  # "first" | "second"
    sensor_root: str | None
    case_path: str
    cache_error: str = ""

    @property
    def token(self) -> str:
        return self.ref.token

    @property
    def log_name(self) -> str:
        return self.ref.log_name

    @property
    def frame_type(self) -> str:
        return self.ref.kind


@dataclass(frozen=True)
class EvaluationPlan:
    spec: SplitSpec
    paths: DataPaths
    cache_dir: Path
    jobs: tuple[TokenJob, ...]
    mappings: tuple[StageMapping, ...]  # empty for one-stage splits
    input_problems: tuple[tuple[str, str], ...] = ()  # unreadable logs found while listing

    @property
    def aggregation(self) -> str:
        return "two_stage" if self.spec.is_two_stage else "one_stage"

    @property
    def tokens(self) -> list[str]:
        return [j.token for j in self.jobs]

    def stage_tokens(self, stage: str) -> list[str]:
        return [j.token for j in self.jobs if j.stage == stage]


def resolve_split(split: str | SplitSpec, data_root: str | Path) -> SplitSpec:
    return load_split(split, data_root) if isinstance(split, str) else split


def default_cache_dir(out_dir: str | Path, split_name: str) -> Path:
    """Beside the run folder, so that every agent evaluated under the same parent shares one metric cache."""
    return Path(out_dir).absolute().parent / "metric_cache" / split_name


def _stage(spec: SplitSpec, ref: SceneRef) -> str:
    return "second" if spec.is_two_stage and ref.kind == "synthetic" else "first"


def _sensor_root(paths: DataPaths, ref: SceneRef) -> str | None:
    root = paths.synthetic_sensor_path if ref.kind == "synthetic" else paths.original_sensor_path
    return None if root is None else str(root)


def list_jobs(data_root: str | Path, spec: SplitSpec, cache_dir: str | Path | None,
              cache_failures: dict[str, str] | None = None) -> EvaluationPlan:
    """The frames of ``spec`` in listing order (originals, then synthetic), without touching the cache."""
    from irlvla_bench.caching.runner import case_path

    listing = list_scenes(data_root, spec)
    failures = cache_failures or {}
    cache = Path(cache_dir) if cache_dir is not None else Path()
    jobs = tuple(
        TokenJob(ref=ref, stage=_stage(spec, ref), sensor_root=_sensor_root(listing.paths, ref),
                 case_path=str(case_path(cache, ref.log_name, ref.token)), cache_error=failures.get(ref.token, ""))
        for ref in listing.scenes
    )
    mappings = tuple(StageMapping(now, prev, tuple(tuple(p) for p in pairs)) for now, prev, pairs in spec.mappings)
    return EvaluationPlan(spec, listing.paths, cache, jobs, mappings, tuple(listing.problems))


def prepare_plan(data_root: str | Path, spec: SplitSpec, cache_dir: str | Path, *, workers: int = 1) -> EvaluationPlan:
    """Make sure the split's metric cache exists (``cache_split`` skips what is already there), then list jobs."""
    from irlvla_bench.caching.runner import cache_split

    summary = cache_split(data_root, spec, cache_dir, workers=workers)
    failures = {o.token: o.reason for o in summary.outcomes if o.status == "failed"}
    return list_jobs(data_root, spec, cache_dir, failures)
