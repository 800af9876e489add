"""IL -> RWM -> PPO on a generated world, and the held-out comparison (issue 9: RL vs IL, learned vs exact reward).

    python bench/rl_experiment.py --root runs/rl_experiment            # everything, resumable stage by stage

Stages (each skipped when its output exists, so an interrupted run continues):

1. ``data``      the procedural world: ``--test-logs`` logs (navhard_two_stage, navtest) + ``--train-logs`` (navtrain)
2. ``il``        the IL policy (``agents.vla.train``, ``small`` config, ``--il-budget`` seconds)
3. ``labels``    navtrain candidates (vocabulary, expert perturbations, IL samples) labelled by the exact scorer
4. ``rwm``       the reward world model (raster encoder) on those labels
5. ``rl_rwm``    PPO with the RWM's predicted EPDMS as reward
   ``rl_exact``  PPO with the exact EPDMS (labelling mode) as reward, same budget and seed
6. ``eval``      IL, RL-RWM and RL-exact on held-out navhard_two_stage, exact EPDMS (evaluation runner); all three
                 through the same agent code (``irlvla_rl:<checkpoint>``), so a difference is the weights
7. ``compare``   ``irlvla-bench report compare`` IL vs each RL run (paired bootstrap CI over tokens)
8. ``hacking``   RWM-predicted vs exact per-sub-metric gains of RL-RWM (and RL-exact) over IL, same tokens

Writes ``<root>/results.json`` and ``<root>/results.md`` with the headline numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stage_data(root: Path, a) -> Path:
    data = root / "data"
    if (data / "world.json").exists():
        return data
    from irlvla_bench.world import generate_world

    say(f"generating the world: {a.test_logs} test + {a.train_logs} train logs")
    generate_world(data, a.test_logs, a.seed, a.world_preset, train_logs=a.train_logs)
    return data


def stage_il(root: Path, data: Path, a) -> Path:
    out = root / "il"
    model = out / "model.pt"
    if model.exists():
        return model
    import torch

    from agents.vla.config import small_config
    from agents.vla.train import train

    torch.set_num_threads(a.threads)
    cfg = small_config()
    cfg = replace(cfg, train=replace(cfg.train, time_budget_s=float(a.il_budget), num_threads=a.threads,
                                     epochs=a.il_epochs or cfg.train.epochs, seed=a.seed))
    say(f"training the IL policy ({cfg.train.epochs} epochs, budget {a.il_budget} s)")
    train(data, "navtrain", cfg, out, progress=False, log=say)
    if not model.exists():
        raise RuntimeError(f"IL training finished without {model}")
    return model


def metric_cache(root: Path, data: Path, split: str) -> Path:
    from irlvla_bench.caching import cache_split

    folder = root / "metric_cache" / split
    if not (folder / "cache_summary.json").exists():
        say(f"caching {split}")
        cache_split(data, split, folder)
    return folder


def stage_labels(root: Path, data: Path, il: Path, a) -> Path:
    out = root / "labels"
    if (out / "label_summary.json").exists():
        return out
    from agents.rl import samplers
    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_split, vocabulary_from_cache

    cache = metric_cache(root, data, "navtrain")
    os.environ[samplers.ENV_CHECKPOINT] = str(il)
    os.environ[samplers.ENV_DATA] = str(data)
    os.environ[samplers.ENV_SPLIT] = "navtrain"
    vocabulary = vocabulary_from_cache(cache, a.vocabulary, seed=a.seed)
    config = LabelConfig(candidates=CandidateConfig(perturbations=a.perturbations, il_samples=a.il_samples,
                                                    il_sampler="agents.rl.samplers:il_sampler" if a.il_samples else None,
                                                    seed=a.seed))
    say(f"labelling navtrain: {len(vocabulary)} vocabulary + {a.perturbations} perturbations + {a.il_samples} IL "
        "samples per scene")
    summary = label_split(cache, out, vocabulary, config)
    say(f"labelled {summary.count('labelled')} scenes in {summary.seconds:.0f} s")
    return out


def stage_rwm(root: Path, labels: Path, a) -> Path:
    out = root / "rwm"
    path = out / "rwm.pt"
    if path.exists() and (out / "train_summary.json").exists():
        return path
    from agents.rwm.config import preset
    from agents.rwm.train import train_rwm

    cfg = preset("default")
    cfg = replace(cfg, train=replace(cfg.train, steps=a.rwm_steps, threads=a.threads, seed=a.seed))
    say(f"training the RWM ({a.rwm_steps} steps)")
    train_rwm(cfg, [labels], out, resume=True, log=say)
    return path


def stage_rl(root: Path, name: str, data: Path, il: Path, rwm: Path, reward: str, a) -> Path:
    from agents.rl.ppo import POLICY_NAME, Args, run

    out = root / name
    policy = out / POLICY_NAME
    if policy.exists():
        return policy
    args = Args(il=str(il), rwm=str(rwm), data=str(data), split="navtrain",
                cache_dir=str(root / "metric_cache" / "navtrain"), seed=a.seed, iterations=a.iterations,
                threads=a.threads, reward=reward, scenes_per_iteration=a.scenes_per_iteration,
                samples_per_scene=a.samples_per_scene, learning_rate=a.lr, kl_coef=a.kl_coef, min_std=a.min_std,
                eval_every=a.eval_every, eval_scenes=64)
    say(f"PPO with the {reward} reward: {a.iterations} iterations")
    run(args, out, say=say)
    return policy


def stage_eval(root: Path, name: str, data: Path, checkpoint: Path) -> Path:
    out = root / "eval" / name
    if (out / "summary.json").exists():
        return out
    from irlvla_bench.evaluation import evaluate_agent

    say(f"evaluating {name} on navhard_two_stage")
    result = evaluate_agent(f"irlvla_rl:{checkpoint}", data, "navhard_two_stage", out_dir=out,
                            cache_dir=root / "metric_cache" / "navhard_two_stage")
    say(f"{name}: EPDMS {result.epdms}")
    return out


def stage_compare(root: Path, name: str, eval_a: Path, eval_b: Path) -> Path:
    out = root / "compare" / name
    if not (out / "comparison.json").exists():
        say(f"comparing {eval_a.name} vs {eval_b.name}")
        subprocess.run([sys.executable, "-m", "irlvla_bench.cli", "report", "compare", str(eval_a), str(eval_b),
                        "--out", str(out)], check=True, cwd=PROJECT)
    return out


def stage_hacking(root: Path, name: str, eval_a: Path, eval_b: Path, rwm: Path):
    from agents.rl.hacking import hacking_from_evaluations, write_hacking

    out = root / "hacking" / name
    if (out / "reward_hacking.csv").exists():
        import pandas as pd

        return pd.read_csv(out / "reward_hacking.csv", index_col=0)
    frames = hacking_from_evaluations(eval_a, eval_b, rwm, root / "metric_cache" / "navhard_two_stage")
    return write_hacking(frames, out)


def headline(compare_dir: Path) -> dict:
    data = json.loads((compare_dir / "comparison.json").read_text())
    return data


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=PROJECT / "runs" / "rl_experiment")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--world-preset", default="default")
    p.add_argument("--test-logs", type=int, default=30)
    p.add_argument("--train-logs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--il-budget", type=float, default=1200.0, help="IL training time budget [s]")
    p.add_argument("--il-epochs", type=int, default=0, help="0: the small config's")
    p.add_argument("--vocabulary", type=int, default=256)
    p.add_argument("--perturbations", type=int, default=64)
    p.add_argument("--il-samples", type=int, default=40)
    p.add_argument("--rwm-steps", type=int, default=1500)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--scenes-per-iteration", type=int, default=16)
    p.add_argument("--samples-per-scene", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--kl-coef", type=float, default=0.01)
    p.add_argument("--min-std", type=float, default=0.03)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--stop-after", default="", help="stop after this stage (data, il, labels, rwm, rl)")
    a = p.parse_args(argv)
    root = a.root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    data = stage_data(root, a)
    if a.stop_after == "data":
        return
    il = stage_il(root, data, a)
    if a.stop_after == "il":
        return
    labels = stage_labels(root, data, il, a)
    if a.stop_after == "labels":
        return
    rwm = stage_rwm(root, labels, a)
    if a.stop_after == "rwm":
        return
    rl_rwm = stage_rl(root, "rl_rwm", data, il, rwm, "rwm", a)
    rl_exact = stage_rl(root, "rl_exact", data, il, rwm, "exact", a)
    if a.stop_after == "rl":
        return
    metric_cache(root, data, "navhard_two_stage")
    evals = {name: stage_eval(root, name, data, ckpt) for name, ckpt in
             (("il", il), ("rl_rwm", rl_rwm), ("rl_exact", rl_exact))}
    results: dict = {"root": str(root), "args": {k: str(v) for k, v in vars(a).items()}, "evaluations": {},
                     "comparisons": {}, "hacking": {}}
    for name, folder in evals.items():
        summary = json.loads((folder / "summary.json").read_text())
        results["evaluations"][name] = {"epdms": summary.get("epdms"), "metrics": summary.get("metrics")}
    for name in ("rl_rwm", "rl_exact"):
        cmp_dir = stage_compare(root, f"il_vs_{name}", evals["il"], evals[name])
        results["comparisons"][name] = str(cmp_dir)
        table = stage_hacking(root, name, evals["il"], evals[name], rwm)
        results["hacking"][name] = json.loads(table.to_json(orient="index"))
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    say(f"results in {root / 'results.json'}")


if __name__ == "__main__":
    main()
