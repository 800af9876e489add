"""Data pipeline throughput: frames generated per second, tokens cached per second (1 process, 2 Ray workers).

    python bench/bench_data.py [--logs 2] [--preset default] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--logs", type=int, default=2)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", default="navtest")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    warnings.simplefilter("ignore", RuntimeWarning)

    from irlvla_bench.caching import cache_split
    from irlvla_bench.world import generate_world

    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    rows = []
    try:
        t0 = time.perf_counter()
        summary = generate_world(work / "data", args.logs, args.seed, args.preset)
        gen_s = time.perf_counter() - t0
        rows.append(("generate (cameras + lidar)", summary.frames, "frames", gen_s))

        import irlvla_bench.caching.runner as runner  # warm numba / imports outside the timed region

        first = cache_split(work / "data", args.split, work / "warm", tokens=None)
        shutil.rmtree(work / "warm")
        del runner, first
        t0 = time.perf_counter()
        single = cache_split(work / "data", args.split, work / "cache1")
        rows.append((f"cache {args.split}, 1 process", single.cached, "tokens", time.perf_counter() - t0))

        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            warm = cache_split(work / "data", args.split, work / "warm2", workers=2)  # worker start-up
            del warm
            t0 = time.perf_counter()
            multi = cache_split(work / "data", args.split, work / "cache2", workers=2, batch_size=2)
            rows.append((f"cache {args.split}, 2 Ray workers", multi.cached, "tokens", time.perf_counter() - t0))
        finally:
            ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"preset={args.preset} logs={args.logs} seed={args.seed} cpus={os.cpu_count()}")
    print(f"{'stage':<36}{'count':>8}{'unit':>8}{'seconds':>10}{'per s':>10}")
    for name, count, unit, seconds in rows:
        print(f"{name:<36}{count:>8}{unit:>8}{seconds:>10.2f}{count / seconds:>10.2f}")


if __name__ == "__main__":
    main()
