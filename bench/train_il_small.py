"""Reproduce the IL VLA policy's small-config numbers: world -> ego-MLP baseline -> IL training (time-boxed) ->
exact EPDMS on the held-out navhard two-stage split for irlvla_il, ego_mlp and constant_velocity.

    python bench/train_il_small.py --out runs/il_small            # everything (about 30 min on 2 cores)
    python bench/train_il_small.py --out runs/il_small --skip-train   # re-evaluate existing checkpoints

Every step is the public command line (``irlvla-bench data generate / train ego-mlp / train il / evaluate``),
so the printed table is what a user gets. Steps whose outputs exist are skipped (delete them to redo).
Training time is reported as wall clock and as CPU time of the training process; on a shared machine the CPU
time is the honest measure of the work done (wall clock then also counts other processes' use of the cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

WORLD = {"logs": 40, "train_logs": 80, "seed": 0, "preset": "default"}
AGENTS = ("irlvla_il", "ego_mlp", "constant_velocity")


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run a command; (wall seconds, CPU seconds of the command's processes)."""
    print("+", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.perf_counter() - t0, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/il_small"))
    parser.add_argument("--data", type=Path, default=None, help="Existing world (default: OUT/world, generated).")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the training (1: best on a shared 2-core machine, see README)")
    parser.add_argument("--time-budget", type=float, default=None, help="Training budget in seconds (default: "
                                                                        "the small config's 14 min)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--metric-cache", type=Path, default=None,
                        help="Metric cache of the split's scoring cases (default OUT/eval/metric_cache)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = args.data or out / "world"
    cli = [sys.executable, "-m", "irlvla_bench.cli"]
    single = {"OMP_NUM_THREADS": str(args.threads)}
    if not (data / "world.json").exists() and args.data is None:
        run(cli + ["data", "generate", "--out", str(data), "--logs", str(WORLD["logs"]), "--train-logs",
                   str(WORLD["train_logs"]), "--seed", str(WORLD["seed"]), "--preset", WORLD["preset"]])
    ego_ckpt = out / "ego_mlp.pt"
    il_dir = out / "il"
    timing = {}
    if not args.skip_train:
        if not ego_ckpt.exists():
            timing["ego_mlp"] = run(cli + ["train", "ego-mlp", "--data", str(data), "--out", str(ego_ckpt),
                                           "--threads", "1"], single)
        if not (il_dir / "model.pt").exists():
            cmd = cli + ["train", "il", "--data", str(data), "--split", "navtrain", "--config", "small", "--out",
                         str(il_dir), "--eval-split", "navtest", "--threads", str(args.threads)]
            if args.time_budget is not None:
                cmd += ["--time-budget", str(args.time_budget)]
            timing["irlvla_il"] = run(cmd, single)
    specs = {"irlvla_il": f"irlvla_il:{il_dir / 'model.pt'}", "ego_mlp": f"ego_mlp:{ego_ckpt}",
             "constant_velocity": "constant_velocity"}
    results = {}
    for name in AGENTS:
        folder = out / "eval" / name
        if not (folder / "summary.json").exists():
            run(cli + ["evaluate", "--agent", specs[name], "--data", str(data), "--split", "navhard_two_stage",
                       "--out", str(folder), "--cache", str(args.metric_cache or out / "eval" / "metric_cache"),
                       "--quiet"], single)
        results[name] = json.loads((folder / "summary.json").read_text())
    summary_path = il_dir / "train_summary.json"
    train_summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    print()
    print(f"{'agent':<20}{'EPDMS':>8}{'stage 1':>9}{'stage 2':>9}{'NC':>7}{'DAC':>7}{'DDC':>7}{'LK':>7}{'EP':>7}")
    for name, s in results.items():
        m = s["metrics"]
        print(f"{name:<20}{s['epdms']:>8.4f}{s['stage_one']['score']:>9.4f}{s['stage_two']['score']:>9.4f}"
              f"{m['no_at_fault_collisions']:>7.3f}{m['drivable_area_compliance']:>7.3f}"
              f"{m['driving_direction_compliance']:>7.3f}{m['lane_keeping']:>7.3f}{m['ego_progress']:>7.3f}")
    if train_summary:
        ev = train_summary.get("eval") or {}
        print(f"\nirlvla_il small: {train_summary['steps']} steps, {train_summary['epochs']} epochs, "
              f"{train_summary['seconds']:.0f} s of training")
        if "irlvla_il" in timing:
            wall, cpu = timing["irlvla_il"]
            print(f"  train il command: {wall:.0f} s wall, {cpu:.0f} s CPU (cache building included)")
        if ev:
            print(f"  navtest: command accuracy {ev['command_accuracy']:.3f} "
                  f"(speed {ev['speed_command_accuracy']:.3f}, path {ev['path_command_accuracy']:.3f}), "
                  f"segmentation mIoU {ev['segmentation_miou']:.3f}")
            print("  IoU per class: " + ", ".join(f"{k} {v:.3f}" for k, v in ev["segmentation_iou"].items()))
    (out / "bench_summary.json").write_text(json.dumps(
        {"world": WORLD, "epdms": {k: v["epdms"] for k, v in results.items()},
         "stage_one": {k: v["stage_one"]["score"] for k, v in results.items()},
         "stage_two": {k: v["stage_two"]["score"] for k, v in results.items()},
         "timing_wall_cpu_s": timing, "train": train_summary}, indent=1, default=float))


if __name__ == "__main__":
    main()
