"""Model selection for PPO without touching the test logs: the greedy (test-time) plans of several policy
checkpoints on the navhard_two_stage split of a *validation* world, evaluated exactly (two-stage EPDMS, the
evaluation runner's submission path) and compared with the first checkpoint (the IL start) by
``reports.compare`` (paired bootstrap over mappings and over tokens).

    python bench/rl_validate.py --root runs/rl_experiment --policy il=runs/rl_experiment/il/model.pt \
        --policy rl=runs/rl_experiment/rl_exact/policy.pt [--val-logs 30] [--val-seed 13]
    # the same on another world, e.g. the test logs once a checkpoint is chosen:
    python bench/rl_validate.py ... --data runs/rl_experiment/data \
        --cache runs/rl_experiment/metric_cache/navhard_two_stage --tag test

Why not ``evaluate --agent``: the runner reads every camera and LiDAR frame per token (~3 s per token for the small
IL policy on this machine), while PPO freezes the perception trunk, so the scene features of the IL checkpoint
are those of every fine-tune and are computed once (``agents.rl.fast_eval``); the planner then gives
the agent's very poses (same per-token seeds) in milliseconds, and the runner scores them as a NAVSIM submission.
The headline test number of the chosen checkpoint still comes from ``evaluate --agent`` (end to end).

The validation world has its own seed and road network: nothing of it is in training or in the test logs.
Prints a table and writes ``<root>/validation/<tag>/results.json`` and one evaluation folder per policy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(PROJECT), str(PROJECT / "bench")]

from rl_experiment import navhard_world, say  # noqa: E402  (the experiment's world and log helpers)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=PROJECT / "runs" / "rl_experiment")
    p.add_argument("--policy", action="append", required=True, metavar="NAME=CHECKPOINT",
                   help="repeatable; the first is the reference (the IL start)")
    p.add_argument("--val-logs", type=int, default=30)
    p.add_argument("--val-seed", type=int, default=13)
    p.add_argument("--world-preset", default="default")
    p.add_argument("--data", type=Path, default=None, help="another world (default: the validation world)")
    p.add_argument("--cache", type=Path, default=None, help="its navhard_two_stage metric cache (with --data)")
    p.add_argument("--tag", default="val", help="sub-folder of <root>/validation for the evaluations")
    p.add_argument("--bootstrap", type=int, default=2000)
    a = p.parse_args(argv)
    import torch

    from agents.rl.fast_eval import evaluate_poses, planner_poses
    from agents.rl.world import cached_scene_set, load_policy_model, sha256_file
    from reports.compare import compare_evaluations

    torch.set_num_threads(1)
    root = a.root.absolute()
    policies = [tuple(item.split("=", 1)) for item in a.policy]
    if any(len(p_) != 2 for p_ in policies):
        raise SystemExit("--policy takes NAME=CHECKPOINT")
    if a.data is None:
        data, cache = navhard_world(root, "val_world", a.val_logs, a.val_seed, a.world_preset, "the validation world")
    else:
        data, cache = a.data.absolute(), a.cache.absolute()
    reference = Path(policies[0][1])
    model, _ = load_policy_model(reference)  # the trunk PPO keeps frozen: its features serve every fine-tune
    scenes, hit = cached_scene_set(model, sha256_file(reference), data, "navhard_two_stage", cache)
    say(f"{len(scenes)} frames of {data} ({'cached' if hit else 'built'} features)")
    out = root / "validation" / a.tag
    folders = {}
    for name, checkpoint in policies:
        folders[name] = evaluate_poses(planner_poses(checkpoint, scenes), name, data, "navhard_two_stage", cache,
                                       out / name)
    ref_name = policies[0][0]
    results = {}
    print(f"{'policy':28s} {'EPDMS':>7s} {'delta':>8s} {'95% CI (mappings)':>20s} {'p':>7s} "
          f"{'row delta':>9s} {'95% CI (tokens)':>20s}")
    for name, _ in policies:
        c = compare_evaluations(folders[ref_name], folders[name], n_boot=a.bootstrap, seed=0)
        m, t = c.mapping_stats or {}, c.stat("score")
        results[name] = {"epdms": c.epdms_b, "delta": c.epdms_delta, "mapping_ci": [m.get("ci_low"), m.get("ci_high")],
                         "mapping_p": m.get("p_value"), "row_delta": float(t["delta"]),
                         "token_ci": [float(t["ci_low"]), float(t["ci_high"])],
                         "metrics": json.loads((folders[name] / "summary.json").read_text())["metrics"]}
        print(f"{name:28s} {c.epdms_b:7.4f} {c.epdms_delta:+8.4f} [{m.get('ci_low', float('nan')):+.4f}, "
              f"{m.get('ci_high', float('nan')):+.4f}] {m.get('p_value', float('nan')):7.3g} {t['delta']:+9.4f} "
              f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]")
    from irlvla_bench.io.atomic import write_json_atomic

    write_json_atomic(out / "results.json", {"data": str(data), "frames": len(scenes), "policies": dict(policies),
                                             "results": results}, indent=2)


if __name__ == "__main__":
    main()
