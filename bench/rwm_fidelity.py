"""Reward world model fidelity, end to end: worlds -> caches -> exact labels -> RWMs -> fidelity reports on
held-out test logs. Every stage is skipped when its output exists, so an interrupted run continues.

    python bench/rwm_fidelity.py --out runs/rwm_fidelity [--train-logs 30] [--test-logs 6] [--seed 1]
        [--extra-logs 40] [--extra-seed 7] [--steps 5000] [--workers 2] [--vocab-size 1024]
        [--perturbations 512] [--preference 0.5] [--ablations]

Data: world A (``--seed``) gives the training split (navtrain, its train logs) and the held-out test splits
(navtest and navhard_two_stage of its test logs, original and synthetic frames). navtrain has no synthetic
frames, so a second world B (``--extra-seed``, ``--extra-logs`` logs, another road network) contributes its
navtest and navhard_two_stage frames to *training*: the RWM then sees perturbed (synthetic) start states too.
Nothing of world A's test logs is used for training; the vocabulary is fitted on world A's navtrain only.

Models: ``rwm`` (default config: raster encoder, lane-following object forecasts), ``rwm_preference`` (plus the
Bradley-Terry expert term), and with ``--ablations`` ``rwm_cv`` (constant-velocity forecasts) and
``rwm_logged`` (the logged future of the objects: the scorer's own, oracle, view). Prints the headline numbers
and writes ``<out>/bench_summary.json``; reports are under ``<out>/reports/<model>/``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from dataclasses import replace
from pathlib import Path

TEST_SPLITS = ("navtest", "navhard_two_stage")


def _stage(name: str) -> None:
    print(f"== {name}", flush=True)


def _world(root: Path, test_logs: int, train_logs: int, seed: int) -> Path:
    from irlvla_bench.world import generate_world

    if not (root / "world.json").exists():
        _stage(f"generate {root.name}: {test_logs} test + {train_logs} train logs (seed {seed})")
        generate_world(root, test_logs, seed, "default", train_logs=train_logs)
    return root


def prepare_labels(out: Path, args) -> dict[str, Path]:
    """Label folders: ``navtrain`` and the test splits of world A, ``B_<split>`` of world B."""
    import numpy as np

    from irlvla_bench.caching import cache_split
    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_split, vocabulary_from_cache

    jobs = [("navtrain", _world(out / "world", args.test_logs, args.train_logs, args.seed), "navtrain")]
    jobs += [(split, out / "world", split) for split in TEST_SPLITS]
    if args.extra_logs:
        world_b = _world(out / "world_b", args.extra_logs, 0, args.extra_seed)
        jobs += [(f"B_{split}", world_b, split) for split in TEST_SPLITS]
    config = LabelConfig(candidates=CandidateConfig(perturbations=args.perturbations, seed=args.seed))
    dirs: dict[str, Path] = {}
    vocabulary = None
    for name, data, split in jobs:
        cache = out / "cache" / name
        if not (cache / "metadata.csv").exists():
            _stage(f"cache {name}")
            cache_split(data, split, cache, workers=args.workers)
        labels = out / "labels" / name
        if vocabulary is None:  # the first job is navtrain: the vocabulary comes from training data only
            vocab_file = labels / "vocabulary.npy"
            if vocab_file.exists():
                vocabulary = np.load(vocab_file)
            else:
                _stage(f"vocabulary: k-means {args.vocab_size} on {name}")
                vocabulary = vocabulary_from_cache(cache, args.vocab_size, seed=args.seed)
        _stage(f"label {name}")
        summary = label_split(cache, labels, vocabulary, config, workers=args.workers, progress=True,
                              meta={"data_root": str(data.resolve()), "split": split})
        print(f"   {summary.count('labelled')} labelled, {summary.count('skipped')} already there, "
              f"{summary.to_dict()['trajectories_per_s_per_worker']} traj/s/worker", flush=True)
        dirs[name] = labels
    return dirs


def train_models(out: Path, dirs: dict[str, Path], args) -> dict[str, Path]:
    from agents.rwm.config import preset
    from agents.rwm.train import CHECKPOINT_FINAL, train_rwm

    base = preset("default")
    base = replace(base, train=replace(base.train, steps=args.steps, seed=args.seed, threads=args.threads))

    def motion(cfg, kind):
        return replace(cfg, encoder=replace(cfg.encoder, raster=replace(cfg.encoder.raster, object_motion=kind)))

    models = {"rwm": base}
    if args.preference > 0:
        models["rwm_preference"] = replace(base, loss=replace(base.loss, preference=args.preference))
    if args.ablations:
        models["rwm_cv"] = motion(base, "constant_velocity")
        models["rwm_logged"] = motion(base, "logged")
    train_dirs = [dirs["navtrain"]] + [d for name, d in dirs.items() if name.startswith("B_")]
    checkpoints = {}
    for name, cfg in models.items():
        run = out / "runs" / name
        if not (run / CHECKPOINT_FINAL).exists():
            _stage(f"train {name} ({cfg.train.steps} steps, preference weight {cfg.loss.preference}, objects "
                   f"{cfg.encoder.raster.object_motion})")
            train_rwm(cfg, train_dirs, run, resume=True,
                      log=lambda line: print("   " + line, flush=True) if "00/" in line or "featur" in line else None)
        checkpoints[name] = run / CHECKPOINT_FINAL
    return checkpoints


def report(out: Path, dirs: dict[str, Path], checkpoints: dict[str, Path], args) -> dict:
    from reports.fidelity_report import build_fidelity_report

    results = {}
    for name, checkpoint in checkpoints.items():
        _stage(f"fidelity report of {name}")
        result = build_fidelity_report(checkpoint, [dirs[s] for s in TEST_SPLITS], out / "reports" / name,
                                       throughput_scenes=args.throughput_scenes, threads=args.threads)
        results[name] = result.numbers
    return results


def headline(numbers: dict) -> dict:
    overall = numbers["overall"]
    row = {f"AUROC {k}": v["auroc"] for k, v in overall["binary"].items()}
    row.update({"EP MAE": overall["ego_progress"]["mae"], "EPDMS Spearman": overall["epdms"]["spearman"],
                "EPDMS Pearson": overall["epdms"]["pearson"], "EPDMS Kendall": overall["epdms"]["kendall"],
                "top-1 regret [pts]": overall["ranking"]["top1_regret_mean_points"],
                "NDCG@5": overall["ranking"]["ndcg@5"]})
    expert = numbers.get("expert") or {}
    if expert:
        row["human-better pairs agreed"] = expert["accuracy_human_better"]
        row["human percentile (RWM / exact)"] = f"{expert['human_percentile_rwm']:.3f} / " \
                                                f"{expert['human_percentile_exact']:.3f}"
    t = numbers.get("throughput") or {}
    if t:
        row["RWM / exact throughput"] = t["ratio_rwm_over_exact"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/rwm_fidelity"))
    parser.add_argument("--train-logs", type=int, default=30)
    parser.add_argument("--test-logs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--extra-logs", type=int, default=40, help="world B logs for training (0: none)")
    parser.add_argument("--extra-seed", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--perturbations", type=int, default=512)
    parser.add_argument("--preference", type=float, default=0.5, help="0 trains only the model without it")
    parser.add_argument("--throughput-scenes", type=int, default=6)
    parser.add_argument("--ablations", action="store_true", help="also constant-velocity and logged-object RWMs")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    warnings.simplefilter("ignore", RuntimeWarning)
    t0 = time.perf_counter()
    dirs = prepare_labels(args.out, args)
    checkpoints = train_models(args.out, dirs, args)
    results = report(args.out, dirs, checkpoints, args)
    rows = {name: headline(numbers) for name, numbers in results.items()}
    names = list(rows)
    print()
    print(f"{'':34s}" + "".join(f"{n:>22s}" for n in names))
    for key in rows[names[0]]:
        cells = [rows[n].get(key) for n in names]
        print(f"{key:34s}" + "".join(f"{c:>22.3f}" if isinstance(c, float) else f"{str(c):>22s}" for c in cells))
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": round(time.perf_counter() - t0, 1),
               "headline": rows, "checks": {n: r["checks"] for n, r in results.items()}}
    (args.out / "bench_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nreports in {args.out / 'reports'}; summary in {args.out / 'bench_summary.json'}")


if __name__ == "__main__":
    main()
