"""``irlvla-bench label``: candidate trajectories of a split labelled by the exact EPDMS (RWM training data).

Mounted on the root app by ``register(app)``; nothing heavy is imported until the command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

_err = Console(stderr=True)
_out = Console()


def label(
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout)."),
    split: str = typer.Option(..., "--split", help="Split name (navtrain, navtest, navhard_two_stage) or YAML path."),
    out: Path = typer.Option(..., "--out", help="Label folder (shards/, vocabulary.npy, label_summary.json)."),
    workers: int = typer.Option(1, "--workers", min=1, help="> 1 labels scenes in Ray tasks."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Scoring-case cache of the split (default OUT/cases; "
                                         "made or completed first)."),
    vocab: Optional[Path] = typer.Option(None, "--vocab", help="Vocabulary .npy to use (e.g. the training split's); "
                                         "default: fit one on this split's expert trajectories."),
    vocab_size: int = typer.Option(1024, "--vocab-size", min=1, help="k-means centres when fitting (256..8192)."),
    vocab_per_scene: Optional[int] = typer.Option(None, "--vocab-per-scene", min=1,
                                                  help="Label a seeded subset of the vocabulary per scene."),
    perturbations: int = typer.Option(256, "--perturbations", min=0, help="Expert perturbations per scene."),
    il_samples: int = typer.Option(0, "--il-samples", min=0, help="IL-policy samples per scene."),
    il_sampler: Optional[str] = typer.Option(None, "--il-sampler", help="'package.module:function' giving samples."),
    traffic: str = typer.Option("log_replay", "--traffic", help="Traffic policy of the exact scorer."),
    seed: int = typer.Option(0, "--seed", help="Seed of the vocabulary fit and the per-scene candidates."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Relabel scenes that already have a shard."),
) -> None:
    """Label a split's candidates (vocabulary, expert perturbations, IL samples) with every EPDMS sub-metric."""
    import numpy as np

    from evaluators.epdms import available_policies
    from irlvla_bench.caching.runner import NothingCachedError, cache_split
    from irlvla_bench.errors import InputError
    from irlvla_bench.labelling import CandidateConfig, LabelConfig, label_split, vocabulary_from_cache

    if traffic not in available_policies():
        raise typer.BadParameter(f"must be one of {', '.join(available_policies())}", param_hint="--traffic")
    cache_dir = cache or out / "cases"
    try:
        cache_split(data, split, cache_dir, workers=workers, progress=True)
        if vocab is not None:
            vocabulary = np.load(vocab)
        elif (out / "vocabulary.npy").exists() and not overwrite:
            vocabulary = np.load(out / "vocabulary.npy")
        else:
            vocabulary = vocabulary_from_cache(cache_dir, vocab_size, seed=seed)
        config = LabelConfig(candidates=CandidateConfig(vocabulary_per_scene=vocab_per_scene,
                                                        perturbations=perturbations, il_samples=il_samples,
                                                        il_sampler=il_sampler, seed=seed), traffic=traffic)
        summary = label_split(cache_dir, out, vocabulary, config, workers=workers, overwrite=overwrite,
                              progress=True, meta={"data_root": str(Path(data).resolve()), "split": split})
    except (InputError, NothingCachedError, ValueError) as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    numbers = summary.to_dict()
    table = Table(title=f"label {split} -> {out}")
    for column in ("labelled", "skipped", "failed", "rows_labelled", "seconds", "trajectories_per_s_per_worker"):
        table.add_column(column, justify="right")
    table.add_row(*(str(numbers[c]) for c in ("labelled", "skipped", "failed", "rows_labelled", "seconds",
                                              "trajectories_per_s_per_worker")))
    _out.print(table)
    for failure in numbers["failures"][:20]:
        _out.print(f"[yellow]failed[/yellow] {failure['token']} ({failure['log_name']}): {failure['reason']}")
    if numbers["failed"] and not numbers["labelled"] and not numbers["skipped"]:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``label`` command to ``app`` (the root ``irlvla-bench`` app)."""
    app.command("label")(label)
