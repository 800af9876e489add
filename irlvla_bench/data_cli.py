"""``irlvla-bench data ...``: generate the procedural world, cache a split into scoring cases."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Datasets: generate the procedural NAVSIM-layout world; cache a split into scoring cases.",
                  no_args_is_help=True)
_err = Console(stderr=True)
_out = Console()


def _print_summary(title: str, values: dict) -> None:
    """One-row summary table of a command's counts."""
    table = Table(title=title)
    for column in values:
        table.add_column(column, justify="right")
    table.add_row(*(str(v) for v in values.values()))
    _out.print(table)


@app.command()
def generate(
    out: Path = typer.Option(..., "--out", help="Dataset root to write (NAVSIM layout: maps/, navsim_logs/, ...)."),
    logs: int = typer.Option(4, "--logs", min=1, help="Number of test logs."),
    seed: int = typer.Option(0, "--seed", help="Seed; the same seed writes the same bytes."),
    preset: str = typer.Option("default", "--preset", help="World size preset: tiny, default, large."),
    train_logs: int = typer.Option(0, "--train-logs", min=0, help="Extra logs for a navtrain-style split."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Log length in seconds (overrides the preset)."),
    no_cameras: bool = typer.Option(False, "--no-cameras", help="Skip camera images."),
    no_lidar: bool = typer.Option(False, "--no-lidar", help="Skip lidar point clouds."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dataset in OUT."),
) -> None:
    """Write a complete NAVSIM-layout dataset from the procedural world."""
    from dataclasses import replace

    from irlvla_bench.world import generate_world
    from irlvla_bench.world.config import preset as get_preset

    try:
        cfg = get_preset(preset)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--preset") from None
    if duration is not None:
        if duration < 8.5:
            raise typer.BadParameter("logs shorter than 8.5 s hold no navtest scene", param_hint="--duration")
        cfg = replace(cfg, log_duration_s=duration)
    if no_cameras:
        cfg = replace(cfg, cameras=False)
    if no_lidar:
        cfg = replace(cfg, sensors=replace(cfg.sensors, lidar=False))
    try:
        summary = generate_world(out, logs, seed, cfg, train_logs=train_logs, overwrite=overwrite,
                                 progress=lambda name, i, n: _err.print(f"[{i}/{n}] {name}"))
    except FileExistsError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    _print_summary(f"generated {out}", {
        "logs": len(summary.logs), "frames": summary.frames, "navtest scenes": summary.one_stage_scenes,
        "navhard mappings": summary.two_stage_mappings, "synthetic scenes": summary.synthetic_scenes,
        "seconds": f"{summary.seconds:.1f}"})


@app.command()
def cache(
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout)."),
    split: str = typer.Option(..., "--split", help="Split name (e.g. navtest, navhard_two_stage) or YAML path."),
    out: Path = typer.Option(..., "--out", help="Cache directory for the scoring cases."),
    workers: int = typer.Option(1, "--workers", min=1, help="> 1 runs the same code in Ray tasks."),
    tokens: Optional[List[str]] = typer.Option(None, "--token", help="Cache only these tokens (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute cases that already exist."),
    show_failures: int = typer.Option(20, "--show-failures", help="How many failure reasons to print."),
) -> None:
    """Cache a split: one validated scoring case per scene (resumable; bad tokens are reported, not fatal)."""
    from irlvla_bench.caching.runner import NothingCachedError, cache_split
    from irlvla_bench.errors import InputError

    try:
        summary = cache_split(data, split, out, workers=workers, tokens=tokens, overwrite=overwrite, progress=True)
    except InputError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    except NothingCachedError as exc:
        _err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _print_summary(f"cache {summary.split} -> {summary.out_dir}", {
        "cached": summary.cached, "skipped": summary.skipped, "failed": summary.failed, "groups": summary.groups,
        "seconds": f"{summary.seconds:.1f}", "workers": summary.workers})
    skips = [o for o in summary.outcomes if o.status == "skipped"]
    if skips:
        _out.print(f"skipped {len(skips)}: already cached (use --overwrite to recompute)")
    failures = [o for o in summary.outcomes if o.status == "failed"]
    for o in failures[:show_failures]:
        _out.print(f"[yellow]failed[/yellow] {o.token} ({o.log_name}): {o.reason}")
    if len(failures) > show_failures:
        _out.print(f"... {len(failures) - show_failures} more in {summary.out_dir}/cache_summary.json")
    for what, why in summary.problems:
        _out.print(f"[yellow]unreadable[/yellow] {what}: {why}")


if __name__ == "__main__":
    app()
