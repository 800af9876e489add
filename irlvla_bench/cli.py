"""The ``irlvla-bench`` command line: one typer app, thin subcommands over library functions."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from irlvla_bench.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark and evaluation harness for end-to-end driving (exact NAVSIM v2 EPDMS).")
console = Console(width=None if sys.stdout.isatty() else 170)
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _scores_table(run) -> Table:
    from evaluators.epdms.score import SUB_METRICS

    short = {"no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC",
             "driving_direction_compliance": "DDC", "traffic_light_compliance": "TLC", "ego_progress": "EP",
             "time_to_collision_within_bound": "TTC", "lane_keeping": "LK", "history_comfort": "HC"}
    table = Table(title="EPDMS", show_lines=False)
    table.add_column("input")
    table.add_column("n", justify="right")
    for name in SUB_METRICS:
        table.add_column(short[name], justify="right")
    table.add_column("EC", justify="right")
    table.add_column("EPDMS", justify="right", style="bold")
    for path, scores in run.cases:
        row = [path.name, str(len(scores))]
        row += [f"{scores.metrics[m].mean():.3f}" for m in SUB_METRICS]
        row += ["-", f"{scores.score_single_frame.mean():.4f}"]
        table.add_row(*row)
    pooled = [(p.name, g) for p, g in run.groups]
    if run.dataset is not None:
        pooled.append(("dataset (all groups)", run.dataset))
    for name, group in pooled:
        for k, agent in enumerate(group.agents):
            stage = agent.summary["extended_pdm_score_stage_one"]
            combined = agent.summary["extended_pdm_score_combined"]
            row = [f"{name} agent {k}", str(len(group.frames))]
            row += [f"{stage[m]:.3f}" for m in SUB_METRICS]
            row += [f"{stage['two_frame_extended_comfort']:.3f}", f"{combined['score']:.4f}"]
            table.add_row(*row)
    return table


@app.command()
def score(
    paths: List[Path] = typer.Argument(..., help="Scoring cases, scene groups (.json/.json.gz) or folders."),
    out_dir: Optional[Path] = typer.Option(None, "--out-dir", help="Where to write <stem>.result.json (default: next to each input)."),
    traffic: str = typer.Option("log_replay", "--traffic", help="Traffic policy: log_replay or idm."),
    mode: str = typer.Option("submission", "--mode", help="submission (each proposal alone) or labelling (one batch)."),
    diagnostics: bool = typer.Option(False, "--diagnostics", help="Add unfiltered metrics, progress and per-step flags."),
    quiet: bool = typer.Option(False, "--quiet", help="Do not print the table."),
) -> None:
    """Score cases and scene groups with the exact EPDMS; writes one result file per input."""
    from evaluators.epdms import MODES, available_policies
    from evaluators.epdms.run import expand_inputs, score_paths

    if mode not in MODES:
        _fail(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if traffic not in available_policies():
        _fail(f"--traffic must be one of {', '.join(available_policies())}, got {traffic!r}")
    try:
        total = len(expand_inputs(paths))
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, disable=quiet or not sys.stderr.isatty()) as bar:
            task = bar.add_task("scoring", total=total)

            def advance(name: str) -> None:
                bar.update(task, advance=1, description=f"scoring {name}")

            run = score_paths(paths, out_dir=out_dir, traffic=traffic, mode=mode, diagnostics=diagnostics,
                              progress=advance)
    except InputError as exc:
        _fail(str(exc))
    if not quiet:
        console.print(_scores_table(run))
        console.print(f"wrote {len(run.written)} result file(s)" + (f" to {out_dir}" if out_dir else ""))


@app.command()
def examples(out: Path = typer.Option(Path("examples"), "--out", help="Folder to write the example cases to."),
             seed: int = typer.Option(0, "--seed")) -> None:
    """Write the bundled procedural example cases (scoring-case format) to a folder."""
    from irlvla_bench.examples import write_examples

    written = write_examples(out, seed=seed)
    console.print(f"wrote {len(written)} example case(s) to {out}")


@app.command()
def demo(out: Optional[Path] = typer.Option(None, "--out", help="Keep the example cases and results here."),
         mode: str = typer.Option("labelling", "--mode")) -> None:
    """The main job on the embedded default: write the example cases, score them, print the table."""
    from evaluators.epdms.run import score_paths
    from irlvla_bench.examples import write_examples

    folder = out or Path(tempfile.mkdtemp(prefix="irlvla-demo-"))
    write_examples(folder)
    run = score_paths([folder], out_dir=folder, mode=mode)
    console.print(_scores_table(run))
    console.print(f"cases and results in {folder}")


@app.command()
def pipeline(
    preset: str = typer.Option("default", "--preset", help="default (2 CPU cores, ~10 min) or full (GPU-sized)."),
    out: Path = typer.Option(Path("runs/pipeline"), "--out", help="Output folder; finished stages are skipped."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Ray workers for caching and evaluation."),
) -> None:
    """Everything: world, cache, IL, labels, RWM, fidelity, PPO, evaluation, comparison, leaderboard, index."""
    from irlvla_bench.pipeline import pipeline_preset
    from irlvla_bench.pipeline.run import run_pipeline

    try:
        config = pipeline_preset(preset, **({"workers": workers} if workers else {}))
    except ValueError as exc:
        _fail(str(exc))
    results = run_pipeline(out, config, log=lambda line: err_console.print(line, highlight=False, markup=False))
    table = Table(title=f"pipeline {preset}: {out}")
    for column in ("stage", "status", "seconds", "result"):
        table.add_column(column)
    for result in results.values():
        shown = {k: v for k, v in result.details.items() if k in ("epdms", "top", "cached", "final_loss", "path")}
        table.add_row(result.name, "skipped" if result.skipped else "ran", f"{result.seconds:.1f}", str(shown))
    console.print(table)
    console.print(f"open {Path(out) / 'index.html'}")


def _mount_subcommands() -> None:
    from evaluators.bench2drive.cli import app as bench2drive_app

    app.add_typer(bench2drive_app, name="b2d", help="Bench2Drive metrics from CARLA leaderboard outputs.")
    from importlib.util import find_spec

    # The data layer (NAVSIM logs, nuPlan maps, procedural world) mounts when its module is installed.
    if find_spec("irlvla_bench.data_cli") is not None:
        from irlvla_bench.data_cli import app as data_app

        app.add_typer(data_app, name="data", help="Generate the procedural world, read NAVSIM data, cache scenes.")
    from irlvla_bench.train_cli import app as train_app

    app.add_typer(train_app, name="train", help="Train the baseline MLP, the IL policy, the RWM and PPO.")
    from irlvla_bench.eval_cli import register as register_evaluation

    register_evaluation(app)
    from irlvla_bench.label_cli import register as register_labelling

    register_labelling(app)
    from leaderboard.cli import app as leaderboard_app

    app.add_typer(leaderboard_app, name="leaderboard", help="Leaderboard of evaluation summaries (SQLite): add, show, export.")
    from reports.cli import app as reports_app

    app.add_typer(reports_app, name="report", help="Reports over evaluations: regression comparison, RWM fidelity.")


_mount_subcommands()


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
