"""Ray-parallel caching gives the same cases as the single-process path (starts Ray; deselect with -m "not slow")."""

from __future__ import annotations

import gzip
import json
import os
import warnings

import pytest
from test_data_fixtures import cached_split, tiny_world

pytestmark = pytest.mark.slow


def test_two_ray_workers_cache_the_same_cases(tmp_path):
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from irlvla_bench.caching import cache_split

    root, _ = tiny_world()
    single_dir, single = cached_split("navhard_two_stage")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            summary = cache_split(root, "navhard_two_stage", tmp_path / "ray", workers=2, batch_size=2)
    finally:
        ray.shutdown()
    assert summary.cached == single.cached and summary.failed == 0 and summary.groups == single.groups
    for path in sorted(single_dir.rglob("*.json.gz")):
        other = tmp_path / "ray" / path.relative_to(single_dir)
        a = json.loads(gzip.open(path, "rt").read())
        b = json.loads(gzip.open(other, "rt").read())
        assert a == b, path.name
