"""EPDMS evaluator throughput on one core; prints a table.

    python bench/bench_epdms.py [--cases DIR] [--proposals 8192]

Rows: submission mode (each proposal scored as its own NAVSIM submission) over the golden single cases,
labelling mode (one scene, N proposals in one call), and the first-call cost of a fresh process with an empty
and with a warm numba cache. Reference: NAVSIM's own scorer on this machine, ~40 ms per proposal (60 ms with
the human filter).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NAVSIM_MS_PER_PROPOSAL = 40.0
NAVSIM_MS_WITH_FILTER = 60.0
_FIRST_CALL = (
    "import time; t=time.perf_counter();"
    "from irlvla_bench.examples import make_case; from irlvla_bench.io.scoring_case import parse_case;"
    "from evaluators.epdms import score_frame; score_frame(parse_case(make_case('lead')), mode='labelling');"
    "print(time.perf_counter()-t)"
)


def first_call_seconds(cache_dir: str) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, cwd=ROOT, capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from evaluators.epdms import score_frame
    from irlvla_bench.examples import make_case
    from irlvla_bench.io.scoring_case import load_case, parse_case
    from irlvla_bench.types import Proposals

    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=str(ROOT.parent / "shared" / "golden" / "epdms" / "single"))
    parser.add_argument("--proposals", type=int, default=8192)
    args = parser.parse_args()

    folder = Path(args.cases)
    if folder.is_dir():
        cases = [load_case(p) for p in sorted(folder.glob("*.json.gz")) if ".result" not in p.name]
    else:
        cases = [parse_case(make_case(s, seed=i)) for i, s in enumerate(("free", "lead", "cone", "pedestrian"))]
    score_frame(cases[0], mode="submission")  # compile / load the numba cache outside the timings

    count, start = 0, time.perf_counter()
    for case in cases:
        score_frame(case, mode="submission")
        count += len(case.proposals)
    submission_ms = (time.perf_counter() - start) / count * 1e3

    scene = max(cases, key=lambda c: len(c.map_objects) + c.tracked_objects.num_objects)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(scene.proposals), args.proposals)
    poses = scene.proposals.poses[pick] + rng.normal(0.0, 0.3, (args.proposals, 8, 3)) * np.array([1.0, 1.0, 0.02])
    big = scene.with_proposals(Proposals(ids=tuple(str(i) for i in range(args.proposals)), poses=poses))
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        score_frame(big, mode="labelling")
        timings.append(time.perf_counter() - start)
    labelling_s = min(timings)

    with tempfile.TemporaryDirectory() as empty:
        cold = first_call_seconds(empty)
        warm = first_call_seconds(empty)

    rows = [
        ("submission mode", f"{count} proposals / {len(cases)} cases", f"{submission_ms:.3f} ms/proposal",
         f"{1e3 / submission_ms:,.0f}/s", f"{NAVSIM_MS_WITH_FILTER / submission_ms:,.0f}x"),
        ("labelling mode", f"{args.proposals} proposals, 1 scene ({scene.case_id})", f"{labelling_s:.3f} s",
         f"{args.proposals / labelling_s:,.0f}/s", f"{NAVSIM_MS_WITH_FILTER * args.proposals / 1e3 / labelling_s:,.0f}x"),
        ("first call, empty numba cache", "fresh process", f"{cold:.2f} s", "", ""),
        ("first call, warm numba cache", "fresh process", f"{warm:.2f} s", "", ""),
    ]
    widths = [max(len(r[i]) for r in rows + [("what", "workload", "time", "throughput", "vs NAVSIM")]) for i in range(5)]
    header = ("what", "workload", "time", "throughput", "vs NAVSIM (60 ms/prop)")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))


if __name__ == "__main__":
    main()
