"""Metric caching: scene frames -> scoring cases (``navsim-scoring-case/v1``) the way NAVSIM's
``MetricCacheProcessor`` builds its ``MetricCache``, including the PDM-Closed reference trajectory."""

from irlvla_bench.caching.metric_cache import CachingError, build_case, build_case_dict
from irlvla_bench.caching.pdm_closed import (
    NAVSIM_PDM_CLOSED,
    PDMClosedConfig,
    PlanningProblem,
    epdms_selector,
    geometric_selector,
    run_pdm_closed,
)
from irlvla_bench.caching.runner import (
    CacheSummary,
    NothingCachedError,
    cache_one,
    cache_split,
    load_cached_cases,
    load_cached_groups,
)
from irlvla_bench.caching.scene import SceneData, load_scene

__all__ = [
    "CacheSummary", "CachingError", "NAVSIM_PDM_CLOSED", "NothingCachedError", "PDMClosedConfig", "PlanningProblem",
    "SceneData", "build_case", "build_case_dict", "cache_one", "cache_split", "epdms_selector", "geometric_selector",
    "load_cached_cases", "load_cached_groups", "load_scene", "run_pdm_closed",
]
