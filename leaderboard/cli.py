"""``irlvla-bench leaderboard ...``: add evaluation folders to a SQLite leaderboard, show and export rankings.

The database defaults to ``leaderboard.sqlite`` in the current directory (``--db`` picks another).
Exit status: 0 done; 2 bad input, a missing database, or results that must not be ranked together.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from irlvla_bench.errors import InputError

from . import export as exporting
from .store import DEFAULT_DB, LeaderboardError, ranking, store_evaluations
from .summary import load_evaluation

app = typer.Typer(help="Leaderboard of evaluation summaries (SQLite): add, show, export.", no_args_is_help=True,
                  add_completion=False)
# Piped output (CI logs, tests) gets a wide fixed width so the table is not folded into unreadable columns.
_out = Console(width=None if sys.stdout.isatty() else 200)
# soft_wrap: an error line stays one line (file: field: problem), whatever the terminal width, so it can be grepped.
_err = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[Path, typer.Option("--db", help="Leaderboard database (default: ./leaderboard.sqlite).")]
SplitOption = Annotated[Optional[str], typer.Option("--split", help="Only this split.")]
TrafficOption = Annotated[Optional[str], typer.Option("--traffic", help="Only this traffic policy.")]
ScorerOption = Annotated[Optional[str], typer.Option("--scorer-version", help="Only this scorer version.")]


@app.callback()
def _group() -> None:
    """Leaderboard of evaluation summaries."""


def _fail(message: str) -> None:
    _err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(2)


@app.command("add")
def add(
    dirs: Annotated[List[Path], typer.Argument(help="Evaluation folders (irlvla-bench evaluate --out DIR).")],
    db: DbOption = DEFAULT_DB,
    allow_failed: Annotated[bool, typer.Option(
        "--allow-failed",
        help="Also add runs with failed tokens (their EPDMS covers the scored tokens only).")] = False,
) -> None:
    """Validate every folder, then add them all in one transaction; re-adding an evaluation changes nothing."""
    evaluations, problems = [], []
    for folder in dirs:
        try:
            evaluations.append(load_evaluation(folder, allow_failed=allow_failed))
        except InputError as exc:
            problems.append(str(exc))
    if problems:
        # Report every bad folder at once, and write nothing: a half-added batch is harder to reason about.
        for problem in problems:
            _err.print(f"[bold red]error:[/] {escape(problem)}", highlight=False)
        _err.print(f"nothing added ({len(problems)} of {len(dirs)} folders refused)")
        raise typer.Exit(2)
    try:
        results = store_evaluations(db, evaluations)
    except (InputError, LeaderboardError) as exc:
        _fail(str(exc))
    table = Table(title=f"leaderboard {db}")
    for column, justify in (("id", "right"), ("agent", "left"), ("EPDMS", "right"), ("", "left"),
                            ("folder", "left")):
        table.add_column(column, justify=justify)
    for result in results:
        table.add_row(str(result.evaluation_id), escape(result.agent_name), f"{result.epdms:.4f}",
                      "added" if result.added else "already there", escape(str(result.source)))
    _out.print(table)


def _ranking(db: Path, split: str | None, traffic: str | None, scorer_version: str | None):
    try:
        return ranking(db, split=split, traffic=traffic, scorer_version=scorer_version)
    except LeaderboardError as exc:
        _fail(str(exc))


@app.command("show")
def show(db: DbOption = DEFAULT_DB, split: SplitOption = None, traffic: TrafficOption = None,
         scorer_version: ScorerOption = None,
         stages: Annotated[bool, typer.Option("--stages", help="Also show each stage's sub-metrics.")] = False) -> None:
    """Print the ranking by EPDMS with every sub-metric and both stages."""
    view = exporting.build_view(_ranking(db, split, traffic, scorer_version))
    if not view.tables:
        _out.print(view.context)
        return
    _out.print(f"[bold]{view.title}[/]: {escape(view.context)}")
    for caption, header, rows in view.tables:
        if caption == "Stages" and not stages:
            continue
        table = Table(title=caption)
        for name in header:
            table.add_column(name, justify="left" if name in exporting.TEXT_HEADERS else "right",
                             style="bold" if name == "EPDMS" else None)
        for row in rows:
            table.add_row(*map(escape, row))
        _out.print(table)


@app.command("export")
def export(db: DbOption = DEFAULT_DB,
           md: Annotated[Optional[Path], typer.Option("--md", help="Write Markdown here.")] = None,
           html: Annotated[Optional[Path], typer.Option(
               "--html", help="Write a self-contained HTML page here.")] = None,
           csv: Annotated[Optional[Path], typer.Option("--csv", help="Write every column as CSV here.")] = None,
           split: SplitOption = None, traffic: TrafficOption = None, scorer_version: ScorerOption = None) -> None:
    """Write the ranking as Markdown, HTML and/or CSV (each file replaced atomically)."""
    if md is None and html is None and csv is None:
        _fail("nothing to export: give at least one of --md, --html, --csv")
    table = _ranking(db, split, traffic, scorer_version)
    for path in exporting.export(table, md=md, html_path=html, csv=csv):
        _out.print(f"wrote {escape(str(path))}")
