"""The pipeline's stages, in order. Each body calls the library function the matching CLI command calls."""

from __future__ import annotations

from pathlib import Path

from irlvla_bench.pipeline.run import Context, Stage, settings_of


class StageFailed(RuntimeError):
    """A stage finished but its result cannot be used downstream (e.g. an evaluation with failed tokens)."""


def _world(ctx: Context, directory: Path):
    from dataclasses import replace

    from irlvla_bench.world import generate_world, preset

    w = ctx.config.world
    world = preset(w.preset)
    world = replace(world, splits=replace(world.splits, two_stage_mappings_per_log=w.mappings_per_log))
    summary = generate_world(directory, w.test_logs, w.seed, world, train_logs=w.train_logs, overwrite=True,
                             progress=lambda name, i, n: ctx.log(f"  world {i}/{n} {name}"))
    return ["world/world.json"], {"frames": summary.frames, "logs": len(summary.logs),
                                  "mappings": summary.two_stage_mappings, "seconds": round(summary.seconds, 1)}


def _cache(ctx: Context, directory: Path):
    from irlvla_bench.caching import cache_split

    summary = cache_split(ctx.world, ctx.config.eval_split, directory, workers=ctx.config.workers)
    return [ctx.rel(directory / "cache_summary.json")], {"cached": summary.cached + summary.skipped,
                                                         "failed": summary.failed}


def _ego_mlp(ctx: Context, directory: Path):
    import torch

    from agents.baselines.ego_mlp import TrainConfig, save_checkpoint, train_ego_mlp
    from agents.baselines.ego_mlp_data import training_set

    torch.manual_seed(ctx.config.il.seed)
    data = training_set(ctx.world, ctx.config.train_split)
    model, result = train_ego_mlp(data, train_config=TrainConfig(seed=ctx.config.il.seed))
    path = directory / "ego_mlp.pt"
    save_checkpoint(path, model, TrainConfig(seed=ctx.config.il.seed), result,
                    meta={"split": ctx.config.train_split, "tokens": list(data.tokens)})
    return [ctx.rel(path)], {"path": ctx.rel(path), "samples": result.samples, "final_loss": result.losses[-1]}


def evaluate(ctx: Context, directory: Path, spec: str):
    from irlvla_bench.evaluation.runner import evaluate_agent

    result = evaluate_agent(spec, ctx.world, ctx.config.eval_split, traffic=ctx.config.traffic,
                            workers=ctx.config.workers, out_dir=directory,
                            cache_dir=ctx.eval_cache)
    if not result.ok:
        first = result.failed[0]
        raise StageFailed(f"{spec}: {len(result.failed)} tokens failed, first {first['token']}: {first['error']}")
    return [ctx.rel(directory / "summary.json")], {"epdms": result.epdms, "path": ctx.rel(directory)}


def _evaluation_stage(agent: str, checkpoint_stage: str | None = None) -> Stage:
    def body(ctx: Context, directory: Path):
        spec = agent if checkpoint_stage is None else f"{agent}:{ctx.output(checkpoint_stage)}"
        return evaluate(ctx, directory, spec)

    upstream = ("world", "cache") + ((checkpoint_stage,) if checkpoint_stage else ())
    return Stage(f"evaluate {agent}", f"eval/{agent}", settings_of("eval_split", "traffic"), upstream, body)


def _leaderboard(ctx: Context, directory: Path):
    from leaderboard import add_evaluations, ranking
    from leaderboard.export import write_csv, write_html, write_markdown

    db = ctx.out / "leaderboard.sqlite"
    evals = [ctx.out / r.details["path"] for r in ctx.results.values() if r.name.startswith("evaluate ")]
    add_evaluations(db, evals)
    table = ranking(db, split=ctx.config.eval_split, traffic=ctx.config.traffic)
    write_markdown(table, directory / "leaderboard.md")
    write_html(table, directory / "leaderboard.html")
    write_csv(table, directory / "leaderboard.csv")
    top = table.iloc[0]
    return ([ctx.rel(directory / n) for n in ("leaderboard.md", "leaderboard.html", "leaderboard.csv")],
            {"path": ctx.rel(directory / "leaderboard.html"), "entries": len(table), "top": str(top["agent"])})


def _index(ctx: Context, directory: Path):
    from irlvla_bench.pipeline.index import write_index

    path = write_index(ctx)
    return [ctx.rel(path)], {"path": ctx.rel(path)}


def _all_evaluations(config) -> dict:
    return {"baselines": list(config.baselines), "split": config.eval_split, "traffic": config.traffic}


def _train_cache(ctx: Context, directory: Path):
    from irlvla_bench.caching import cache_split

    summary = cache_split(ctx.world, ctx.config.train_split, directory, workers=ctx.config.workers)
    return [ctx.rel(directory / "cache_summary.json")], {"cached": summary.cached + summary.skipped,
                                                         "failed": summary.failed}


def _il(ctx: Context, directory: Path):
    from dataclasses import replace

    from agents.vla.config import preset
    from agents.vla.train import train

    il = ctx.config.il
    cfg = preset(il.config)
    cfg = replace(cfg, train=replace(cfg.train, seed=il.seed, time_budget_s=il.time_budget_s,
                                     epochs=il.epochs or cfg.train.epochs))
    result = train(ctx.world, ctx.config.train_split, cfg, directory, progress=False, log=ctx.log,
                   eval_split=ctx.config.eval_split)
    model = directory / "model.pt"
    if not model.exists():
        raise StageFailed(f"IL training ended without {model}")
    details = {"path": ctx.rel(model), "steps": result.steps, "seconds": round(result.seconds, 1)}
    details.update({k: round(float(v), 4) for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))})
    return [ctx.rel(model)], details


def _label(ctx: Context, directory: Path, cache: Path, vocabulary_from: Path | None):
    import numpy as np

    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_split, vocabulary_from_cache

    lab = ctx.config.labels
    if vocabulary_from is None:
        vocabulary = vocabulary_from_cache(cache, lab.vocabulary, seed=ctx.config.rwm.seed)
    else:
        vocabulary = np.load(vocabulary_from)
    config = LabelConfig(candidates=CandidateConfig(perturbations=lab.perturbations, seed=ctx.config.rwm.seed),
                         traffic=ctx.config.traffic)
    summary = label_split(cache, directory, vocabulary, config, workers=ctx.config.workers)
    return ([ctx.rel(directory / "label_summary.json")],
            {"path": ctx.rel(directory), "scenes": summary.count("labelled") + summary.count("skipped"),
             "seconds": round(summary.seconds, 1)})


def _label_train(ctx: Context, directory: Path):
    return _label(ctx, directory, ctx.out / "cache" / "train", None)


def _label_eval(ctx: Context, directory: Path):
    # Held-out scenes, candidates from the training vocabulary: the fidelity report's test set.
    return _label(ctx, directory, ctx.eval_cache, ctx.output("label train") / "vocabulary.npy")


def _rwm(ctx: Context, directory: Path):
    from dataclasses import replace

    from agents.rwm.config import preset
    from agents.rwm.train import train_rwm

    r = ctx.config.rwm
    cfg = preset(r.preset)
    cfg = replace(cfg, encoder=replace(cfg.encoder, kind=r.encoder),
                  train=replace(cfg.train, steps=r.steps, seed=r.seed))
    summary = train_rwm(cfg, [ctx.output("label train")], directory, resume=True, log=ctx.log)
    path = directory / "rwm.pt"
    return [ctx.rel(path)], {"path": ctx.rel(path), "steps": summary["steps"], "seconds": round(summary["seconds"], 1)}


def _fidelity(ctx: Context, directory: Path):
    from reports.fidelity_report import build_fidelity_report

    result = build_fidelity_report(ctx.output("train rwm"), [ctx.output("label eval")], directory)
    checks = result.numbers["checks"]
    details = {"path": ctx.rel(directory / "fidelity.html"),
               "epdms_spearman": round(checks["epdms_spearman"]["value"], 3),
               "top1_regret_points": round(checks["top1_regret_points"]["value"], 2)}
    details.update({f"auroc_{k}": round(v["value"], 3) for k, v in checks["auroc"].items()})
    return [ctx.rel(directory / "fidelity.html")], details


def _rl(ctx: Context, directory: Path):
    from agents.rl.ppo import POLICY_NAME, Args, run

    rl = ctx.config.rl
    args = Args(il=str(ctx.output("train il")), rwm=str(ctx.output("train rwm")), data=str(ctx.world),
                split=ctx.config.train_split, cache_dir=str(ctx.out / "cache" / "train"), seed=rl.seed,
                iterations=rl.iterations, reward=rl.reward, scenes_per_iteration=rl.scenes_per_iteration,
                samples_per_scene=rl.samples_per_scene, eval_every=0)
    result = run(args, directory, say=ctx.log)
    policy = directory / POLICY_NAME
    details = {"path": ctx.rel(policy), "iterations": result.iteration, "reward": rl.reward}
    if result.rows:  # the first and last iteration's mean reward of the sampled candidates: did PPO move it?
        details.update(reward_first=float(result.rows[0]["reward_mean"]), reward_last=float(result.rows[-1]["reward_mean"]))
    return [ctx.rel(policy)], details


def _compare(ctx: Context, directory: Path):
    from reports.compare import compare_evaluations
    from reports.compare_report import write_comparison_report

    a, b = ctx.output("evaluate irlvla_il"), ctx.output("evaluate irlvla_rl")
    comparison = compare_evaluations(a, b, n_boot=ctx.config.bootstrap, seed=0)
    files = write_comparison_report(comparison, directory)
    score = comparison.stat("score")
    details = {"path": ctx.rel(files.html), "epdms_il": comparison.epdms_a, "epdms_rl": comparison.epdms_b,
               "epdms_delta": comparison.epdms_delta,
               "score_delta_ci": [float(score["ci_low"]), float(score["ci_high"])]}
    m = comparison.mapping_stats
    if m is not None:  # the interval of the two-stage EPDMS itself (mappings resampled)
        details["epdms_delta_ci_mappings"] = [float(m["ci_low"]), float(m["ci_high"])]
    return [ctx.rel(files.html)], details


def _hacking(ctx: Context, directory: Path):
    from agents.rl.hacking import hacking_from_evaluations, write_hacking

    frames = hacking_from_evaluations(ctx.output("evaluate irlvla_il"), ctx.output("evaluate irlvla_rl"),
                                      ctx.output("train rwm"), ctx.eval_cache)
    table = write_hacking(frames, directory)
    return [ctx.rel(directory / "reward_hacking.html")], {"path": ctx.rel(directory / "reward_hacking.html"),
                                                          "flagged": int(table["hacking"].sum())}


# Agents that need a trained checkpoint name the stage that trains it.
_CHECKPOINT_STAGE = {"ego_mlp": "train ego_mlp", "irlvla_il": "train il", "irlvla_rl": "train rl"}


def pipeline_stages(config) -> list[Stage]:
    stages = [
        Stage("world", "world", settings_of("world"), (), _world),
        Stage("cache", "cache/eval", settings_of("eval_split"), ("world",), _cache),
        Stage("cache train", "cache/train", settings_of("train_split"), ("world",), _train_cache),
    ]
    if "ego_mlp" in config.baselines:
        stages.append(Stage("train ego_mlp", "models/ego_mlp", settings_of("train_split", "il"), ("world",), _ego_mlp))
    stages += [
        Stage("train il", "models/il", settings_of("train_split", "eval_split", "il"), ("world",), _il),
        Stage("label train", "labels/train", settings_of("labels", "traffic"), ("cache train",), _label_train),
        Stage("label eval", "labels/eval", settings_of("labels", "traffic"), ("cache", "label train"), _label_eval),
        Stage("train rwm", "models/rwm", settings_of("rwm"), ("label train",), _rwm),
        Stage("fidelity", "reports/fidelity", lambda c: {}, ("train rwm", "label eval"), _fidelity),
        Stage("train rl", "models/rl", settings_of("rl", "train_split"), ("train il", "train rwm", "cache train"),
              _rl),
    ]
    agents = list(config.baselines) + ["irlvla_il", "irlvla_rl"]
    evaluations = [_evaluation_stage(name, _CHECKPOINT_STAGE.get(name)) for name in agents]
    stages += evaluations
    stages += [
        Stage("compare il rl", "reports/compare_il_rl", settings_of("bootstrap"),
              ("evaluate irlvla_il", "evaluate irlvla_rl"), _compare),
        Stage("reward hacking", "reports/reward_hacking", lambda c: {},
              ("evaluate irlvla_il", "evaluate irlvla_rl", "train rwm"), _hacking),
        Stage("leaderboard", "reports/leaderboard", _all_evaluations, tuple(s.name for s in evaluations),
              _leaderboard),
    ]
    stages.append(Stage("index", ".", lambda c: {"name": c.name}, tuple(s.name for s in stages), _index))
    return stages
