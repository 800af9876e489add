"""``b2d`` command group: a thin wrapper around :func:`evaluators.bench2drive.score.score_results`.

Exit status: 0 every metric defined; 1 some metric undefined (where an official tool would crash; the reasons
are printed and stored under ``errors``, the other numbers are still written); 2 malformed input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from irlvla_bench.io.atomic import write_json_atomic, write_text_atomic

from .errors import Bench2DriveInputError
from .render import render
from .score import official_outputs, report_json, score_results

app = typer.Typer(help="Bench2Drive closed-loop metrics (driving score, success rate, abilities, efficiency, "
                       "comfortness) without a CARLA install.", no_args_is_help=True, add_completion=False)


@app.callback()
def _group() -> None:
    """Bench2Drive metrics."""


def _file_order(value: str) -> str | list[str]:
    if value in ("filesystem", "sorted"):
        return value
    return [v.strip() for v in value.split(",") if v.strip()]


@app.command("score")
def score(
    results_dir: Annotated[Path, typer.Argument(help="Folder of per-task leaderboard checkpoint JSONs.")],
    routes: Annotated[Path, typer.Option("--routes", help="Routes XML (.xml or .xml.gz) the run used.")],
    junctions: Annotated[Optional[Path], typer.Option(
        "--junctions", help="Junction table JSON (Traffic_Signs thresholds) instead of CARLA maps.")] = None,
    metric_dir: Annotated[Optional[Path], typer.Option(
        "--metric-dir", help="SAVE_PATH holding <save_name>/metric_info.json (efficiency needs none).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write every number as JSON here.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="List what the official tools do silently (duplicates, missing routes, ...).")] = False,
    file_order: Annotated[str, typer.Option(
        "--file-order", help="Checkpoint reading order: 'filesystem' (what the official glob sees), 'sorted', "
                             "or a comma-separated list of file names.")] = "filesystem",
    official_out: Annotated[Optional[Path], typer.Option(
        "--official-out", help="Also write merged.json / merged_ability.json as the official tools would.")] = None,
) -> None:
    """Score RESULTS_DIR like Bench2Drive's merge/ability/efficiency tools and print the README tables."""
    console = Console()
    try:
        report = score_results(results_dir, routes, junctions=junctions, metric_dir=metric_dir,
                               file_order=_file_order(file_order), strict=strict)
    except Bench2DriveInputError as exc:
        console.print(f"[bold red]input error[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    render(report, console)
    if out is not None:
        write_json_atomic(out, report_json(report), indent=2)
        console.print(f"wrote {out}", highlight=False)
    if official_out is not None:
        for name, content in official_outputs(report).items():
            if isinstance(content, str):
                write_text_atomic(official_out / name, content)
            else:  # the tools dump with indent=4 and no trailing newline
                write_text_atomic(official_out / name, json.dumps(content, indent=4))
        console.print(f"wrote official-format outputs to {official_out}", highlight=False)
    if not report.complete:
        raise typer.Exit(1)
