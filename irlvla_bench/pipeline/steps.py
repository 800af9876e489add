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


# Baselines that need a trained checkpoint name the stage that trains it.
_CHECKPOINT_STAGE = {"ego_mlp": "train ego_mlp"}


def pipeline_stages(config) -> list[Stage]:
    stages = [
        Stage("world", "world", settings_of("world"), (), _world),
        Stage("cache", "cache/eval", settings_of("eval_split"), ("world",), _cache),
    ]
    if "ego_mlp" in config.baselines:
        stages.append(Stage("train ego_mlp", "models/ego_mlp", settings_of("train_split", "il"), ("world",), _ego_mlp))
    evaluations = [_evaluation_stage(name, _CHECKPOINT_STAGE.get(name)) for name in config.baselines]
    stages += evaluations
    stages.append(Stage("leaderboard", "reports/leaderboard", _all_evaluations, tuple(s.name for s in evaluations),
                        _leaderboard))
    stages.append(Stage("index", ".", lambda c: {"name": c.name}, tuple(s.name for s in stages), _index))
    return stages
