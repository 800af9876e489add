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

More PPO runs on the same IL start: ``--rl-only exact|rwm --rl-name SUFFIX [--rl-world-logs 50] [--kl-coef K]
[--iterations N]`` (``--rl-world-logs``: train on the navhard_two_stage frames, original and synthetic, of a second
world instead of navtrain). Pick among them with ``bench/rl_validate.py`` on a validation world, then evaluate the
chosen one once on a fresh test world (docs/results.md has the protocol and the measured numbers).
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
    rl_data, rl_split, rl_cache = rl_scenes(root, data, a)
    # The exact-reward run needs no RWM (its checkpoint is only recorded when there is one).
    args = Args(il=str(il), rwm=str(rwm) if reward == "rwm" or rwm.exists() else "", data=str(rl_data), split=rl_split,
                cache_dir=str(rl_cache), seed=a.seed, iterations=a.iterations,
                threads=a.rl_threads, reward=reward, scenes_per_iteration=a.scenes_per_iteration,
                samples_per_scene=a.samples_per_scene, learning_rate=a.lr, kl_coef=a.kl_coef, min_std=a.min_std,
                eval_every=a.eval_every, eval_scenes=64)
    say(f"PPO with the {reward} reward: {a.iterations} iterations")
    run(args, out, say=say)
    return policy


def rl_scenes(root: Path, data: Path, a) -> tuple[Path, str, Path]:
    """(data root, split, metric cache) of the scenes PPO trains on.

    ``--rl-world-logs 0``: the world's navtrain (original frames only). Otherwise a second world (seed
    ``--rl-world-seed``, its own logs and road network, nothing shared with the held-out test logs) whose
    navhard_two_stage split gives PPO original *and* synthetic (perturbed start state) frames, the kind of frame
    the held-out two-stage evaluation scores in its second stage and that navtrain never shows."""
    if not a.rl_world_logs:
        return data, "navtrain", root / "metric_cache" / "navtrain"
    world, cache = navhard_world(root, "rl_world", a.rl_world_logs, a.rl_world_seed, a.world_preset,
                                 "the RL training world")
    return world, "navhard_two_stage", cache


def navhard_world(root: Path, name: str, logs: int, seed: int, preset: str, what: str) -> tuple[Path, Path]:
    """A further generated world ``root/name`` (test logs only) and its cached navhard_two_stage split, each
    made once."""
    world = root / name
    if not (world / "world.json").exists():
        from irlvla_bench.world import generate_world

        say(f"generating {what}: {logs} logs (seed {seed})")
        generate_world(world, logs, seed, preset, train_logs=0)
    cache = root / "metric_cache" / f"{name}_navhard_two_stage"
    if not (cache / "cache_summary.json").exists():
        from irlvla_bench.caching import cache_split

        say(f"caching {what}'s navhard_two_stage")
        cache_split(world, "navhard_two_stage", cache)
    return world, cache


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


def policy_fidelity(root: Path, data: Path, checkpoints: dict[str, Path], rwm: Path, *, stride: int = 4,
                    min_std: float = 0.03) -> dict:
    """RWM vs exact EPDMS on the candidates each policy samples (what PPO asks the RWM to score), on every
    ``stride``-th held-out navhard frame: correlations, within-scene rank agreement, and the regret of trusting
    the RWM's favourite candidate (exact EPDMS of the RWM's argmax minus the best exact EPDMS)."""
    import numpy as np
    import torch
    from scipy.stats import pearsonr, spearmanr

    from agents.rl.ppo import select_features
    from agents.rl.rewards import ExactScorer, RWMScorer
    from agents.rl.world import cached_scene_set, load_policy_model, sha256_file
    from agents.rwm.predict import RewardModel

    il = checkpoints["il"]
    model, _ = load_policy_model(il)
    scenes, _ = cached_scene_set(model, sha256_file(il), data, "navhard_two_stage",
                                 root / "metric_cache" / "navhard_two_stage")
    exact, predicted = ExactScorer(scenes.cases), RWMScorer(RewardModel.load(rwm), scenes.cases)
    out = {}
    for name, ckpt in checkpoints.items():
        policy, _ = load_policy_model(ckpt)
        e_all, p_all, within, regret = [], [], [], []
        for i in range(0, len(scenes), stride):
            with torch.no_grad():
                sample = policy.planner.sample_with_log_probs(select_features(scenes.features, [i]),
                                                              torch.Generator().manual_seed(i), min_std=min_std)
            poses = sample.trajectories[0].double().numpy()
            e, p = exact.score(i, poses)["epdms"], predicted.score(i, poses)["epdms"]
            e_all.append(e)
            p_all.append(p)
            if e.std() > 0 and p.std() > 0:
                within.append(spearmanr(e, p)[0])
            regret.append(float(e[p.argmax()] - e.max()))
        e, p = np.concatenate(e_all), np.concatenate(p_all)
        out[name] = {"candidates": int(len(e)), "pearson": float(pearsonr(e, p)[0]),
                     "spearman": float(spearmanr(e, p)[0]), "within_scene_spearman": float(np.mean(within)),
                     "mean_exact": float(e.mean()), "mean_predicted": float(p.mean()),
                     "mae": float(np.abs(e - p).mean()), "rwm_argmax_regret": float(np.mean(regret))}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=PROJECT / "runs" / "rl_experiment")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--world-preset", default="default")
    p.add_argument("--test-logs", type=int, default=30)
    p.add_argument("--train-logs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rl-threads", type=int, default=1, help="torch threads of a PPO run")
    p.add_argument("--il-budget", type=float, default=1200.0, help="IL training time budget [s]")
    p.add_argument("--il-epochs", type=int, default=0, help="0: the small config's")
    p.add_argument("--vocabulary", type=int, default=256)
    p.add_argument("--perturbations", type=int, default=64)
    p.add_argument("--il-samples", type=int, default=40)
    p.add_argument("--rwm-steps", type=int, default=1500)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--scenes-per-iteration", type=int, default=16)
    p.add_argument("--samples-per-scene", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--kl-coef", type=float, default=0.01)
    p.add_argument("--min-std", type=float, default=0.03)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--rl-world-logs", type=int, default=0,
                   help="PPO on the navhard_two_stage frames of a second world with this many logs (0: navtrain)")
    p.add_argument("--rl-world-seed", type=int, default=11)
    p.add_argument("--rl-name", default="", help="suffix of the PPO run folders (rl_<reward><suffix>)")
    p.add_argument("--stop-after", default="", help="stop after this stage (data, il, labels, rwm, rl)")
    p.add_argument("--rl-only", choices=("rwm", "exact"), default=None, help="run only this PPO stage, then stop")
    a = p.parse_args(argv)
    root = a.root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()

    if a.rl_only:
        # One PPO run alone (e.g. the two reward modes in two processes side by side): the earlier stages must be
        # complete, never (re)run here, where a second process could be writing them.
        il, rwm = root / "il" / "model.pt", root / "rwm" / "rwm.pt"
        needed = [root / "data" / "world.json", il] + ([rwm] if a.rl_only == "rwm" else [])
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise SystemExit(f"--rl-only {a.rl_only}: run the earlier stages first (missing {', '.join(missing)})")
        stage_rl(root, f"rl_{a.rl_only}{a.rl_name}", root / "data", il, rwm, a.rl_only, a)
        return
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
    rl_rwm = stage_rl(root, f"rl_rwm{a.rl_name}", data, il, rwm, "rwm", a)
    rl_exact = stage_rl(root, f"rl_exact{a.rl_name}", data, il, rwm, "exact", a)
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
        comparison = json.loads((cmp_dir / "comparison.json").read_text())
        score = next(r for r in comparison["stats"] if r["metric"] == "score" and r["stage"] == "all")
        results["comparisons"][name] = {"report": str(cmp_dir), "epdms": comparison["epdms"], "score_all": score}
        table = stage_hacking(root, name, evals["il"], evals[name], rwm)
        results["hacking"][name] = json.loads(table.to_json(orient="index"))
    results["rwm_fidelity_on_policy_samples"] = policy_fidelity(
        root, data, {"il": il, "rl_rwm": rl_rwm, "rl_exact": rl_exact}, rwm)
    results["seconds"] = round(time.perf_counter() - t0, 1)
    (root / "results.json").write_text(json.dumps(results, indent=2))
    (root / "results.md").write_text(results_markdown(results))
    say(f"results in {root / 'results.json'} and {root / 'results.md'}")


def results_markdown(results: dict) -> str:
    lines = ["# IL vs RL on held-out navhard_two_stage (exact EPDMS)", "",
             "| policy | EPDMS (two-stage) |", "|---|---|"]
    for name, ev in results["evaluations"].items():
        lines.append(f"| {name} | {ev['epdms']:.4f} |")
    lines += ["", "## Paired comparison with IL (token row score, paired bootstrap 95% CI)", "",
              "| policy | EPDMS delta | mean row-score delta | 95% CI | Wilcoxon p | wins / ties / losses |",
              "|---|---|---|---|---|---|"]
    for name, c in results["comparisons"].items():
        s = c["score_all"]
        lines.append(f"| {name} | {c['epdms']['delta']:+.4f} | {s['delta']:+.4f} | [{s['ci_low']:+.4f}, "
                     f"{s['ci_high']:+.4f}] | {s['p_value']:.3g} | {s['wins']} / {s['ties']} / {s['losses']} |")
    for name, table in results["hacking"].items():
        lines += ["", f"## Reward hacking check: {name} vs IL (RWM-predicted vs exact gain, per-frame values)", "",
                  "| metric | predicted gain | exact gain | excess | hacking |", "|---|---|---|---|---|"]
        for metric, row in table.items():
            lines.append(f"| {metric} | {row['predicted_gain']:+.4f} | {row['exact_gain']:+.4f} | "
                         f"{row['excess']:+.4f} | {row['hacking']} |")
    lines += ["", "## RWM fidelity on each policy's own samples (held-out frames)", "",
              "| policy | candidates | Pearson | Spearman | within-scene Spearman | MAE | RWM-argmax regret |",
              "|---|---|---|---|---|---|---|"]
    for name, f in results["rwm_fidelity_on_policy_samples"].items():
        lines.append(f"| {name} | {f['candidates']} | {f['pearson']:.3f} | {f['spearman']:.3f} | "
                     f"{f['within_scene_spearman']:.3f} | {f['mae']:.3f} | {f['rwm_argmax_regret']:+.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
