"""``irlvla-bench evaluate`` and ``irlvla-bench submit navsim``; mounted on the root app by ``register(app)``.

Thin wrappers over ``irlvla_bench.evaluation``: argument checks, a progress bar, the summary table, exit codes
(0 all tokens scored, 1 some tokens failed, 2 bad input or configuration).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

_out = Console(width=None if sys.stdout.isatty() else 170)
_err = Console(stderr=True)

SHORT = {"no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC", "driving_direction_compliance": "DDC",
         "traffic_light_compliance": "TLC", "ego_progress": "EP", "time_to_collision_within_bound": "TTC",
         "lane_keeping": "LK", "history_comfort": "HC", "two_frame_extended_comfort": "EC", "score": "EPDMS"}
TRAFFIC_HELP = "Traffic policy of the scorer: log_replay (non-reactive) or idm (reactive)."


def _fail(message: str, code: int = 2) -> None:
    _err.print(f"[bold red]error:[/] {message}", markup=True, highlight=False)
    raise typer.Exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a wrong argument or bad data raises; anything else is a bug and keeps its traceback."""
    from agents.base import CheckpointRequiredError
    from irlvla_bench.caching.runner import NothingCachedError
    from irlvla_bench.errors import InputError
    from irlvla_bench.evaluation.progress import ProgressMismatchError
    from irlvla_bench.evaluation.runner import EvaluationConfigError
    from irlvla_bench.evaluation.submission import SubmissionError
    from irlvla_bench.registry import UnknownNameError

    return (InputError, SubmissionError, ProgressMismatchError, NothingCachedError, UnknownNameError,
            EvaluationConfigError, CheckpointRequiredError, FileNotFoundError)


@contextmanager
def _progress_bar(title: str, quiet: bool) -> Iterator:
    """Yield a ``progress(token, done, total)`` callback drawing a rich bar on stderr."""
    columns = (TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=_err, disable=quiet) as bar:
        task = bar.add_task("preparing the metric cache", total=None)

        def progress(token: str | None, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=token or "")

        yield progress


def _summary_table(summary: dict) -> Table:
    agent = summary["agent"]
    title = (f"{agent['name']} on {summary['split']} ({summary['aggregation'].replace('_', '-')}, "
             f"traffic {summary['traffic']})")
    table = Table(title=title)
    table.add_column("")
    for key in SHORT:
        table.add_column(SHORT[key], justify="right", style="bold" if key == "score" else None)
    blocks = [("EPDMS", summary["metrics"])]
    if summary["aggregation"] == "two_stage":
        blocks += [("stage one", summary["stage_one"]), ("stage two", summary["stage_two"])]
    for label, values in blocks:
        if values is None:
            table.add_row(label, *(["-"] * len(SHORT)))
            continue
        table.add_row(label, *("-" if values[k] is None else f"{values[k]:.4f}" for k in SHORT))
    return table


def _report(result) -> None:
    summary = result.summary
    _out.print(_summary_table(summary))
    _out.print(f"{summary['num_tokens']} token(s), {summary['num_failed']} failed; "
               f"wrote {result.out_dir}/summary.json, rows.parquet, rows.csv")
    for failure in summary["failed"][:20]:
        _out.print(f"[red]failed[/red] {failure['token']} ({failure['log_name']}): {failure['error']}",
                   highlight=False)
    if summary["num_failed"] > 20:
        _out.print(f"... {summary['num_failed'] - 20} more")
    if summary["failed"]:
        _out.print("tracebacks are in summary.json (failed[].traceback)")
    dropped = summary.get("dropped_mappings") or []
    if dropped:
        _out.print(f"[yellow]{len(dropped)} mapping(s) left out of the two-stage aggregation[/yellow] "
                   "(a token failed); listed in summary.json")


def evaluate(
    agent: Optional[str] = typer.Option(None, "--agent", help="NAME[:CHECKPOINT] of a registered agent."),
    submission: Optional[Path] = typer.Option(None, "--submission", help="Score this NAVSIM submission pickle."),
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout)."),
    split: str = typer.Option(..., "--split", help="Split name (e.g. navtest, navhard_two_stage) or YAML path."),
    out: Path = typer.Option(..., "--out", help="Run folder: summary.json, rows.parquet, rows.csv."),
    traffic: str = typer.Option("log_replay", "--traffic", help=TRAFFIC_HELP),
    workers: int = typer.Option(1, "--workers", min=1, help="> 1 runs the same per-token code on Ray actors."),
    seed: int = typer.Option(0, "--seed", help="Agent seed (each token gets a hash of seed and token)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Metric cache (default: OUT/../metric_cache/SPLIT)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Evaluate an agent (or a submission pickle) on a split with the exact EPDMS; resumable."""
    from irlvla_bench.evaluation import evaluate_agent, evaluate_submission

    if (agent is None) == (submission is None):
        _fail("give exactly one of --agent NAME[:CHECKPOINT] and --submission PKL")
    try:
        with _progress_bar("evaluating", quiet) as progress:
            common = dict(traffic=traffic, workers=workers, out_dir=out, cache_dir=cache, seed=seed,
                          progress=progress)
            if agent is not None:
                result = evaluate_agent(agent, data, split, **common)
            else:
                result = evaluate_submission(submission, data, split, **common)
    except _user_errors() as exc:
        _fail(str(exc))
    _report(result)
    if not result.ok:
        raise typer.Exit(1)


def submit_navsim(
    agent: str = typer.Option(..., "--agent", help="NAME[:CHECKPOINT] of a registered agent."),
    data: Path = typer.Option(..., "--data", help="Dataset root (NAVSIM layout)."),
    split: str = typer.Option(..., "--split", help="Split name or YAML path."),
    team: str = typer.Option(..., "--team", help="Team name (NAVSIM's team_name)."),
    authors: str = typer.Option(..., "--authors", help="Team members."),
    email: str = typer.Option(..., "--email", help="E-mail of the corresponding member."),
    institution: str = typer.Option(..., "--institution", help="Affiliation."),
    country: str = typer.Option(..., "--country", help="Country or region."),
    out: Path = typer.Option(Path("submission.pkl"), "--out", help="Pickle to write."),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(1, "--workers", min=1),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Metric cache, needed only with --allow-privileged."),
    allow_privileged: bool = typer.Option(False, "--allow-privileged",
                                          help="Allow agents that read the scoring case (local use only)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write NAVSIM's submission pickle for an agent (complete and validated, or nothing is written)."""
    from irlvla_bench.evaluation import write_submission
    from irlvla_bench.evaluation.submission import FIRST, SECOND

    try:
        with _progress_bar("predicting", quiet) as progress:
            path = write_submission(agent, data, split, team=team, authors=authors, email=email,
                                    institution=institution, country=country, out=out, seed=seed, workers=workers,
                                    cache_dir=cache, allow_privileged=allow_privileged, progress=progress)
    except _user_errors() as exc:
        _fail(str(exc))
    import pickle

    with open(path, "rb") as handle:
        written = pickle.load(handle)
    _out.print(f"wrote {path}: {len(written[FIRST][0])} first-stage and {len(written[SECOND][0])} second-stage "
               f"prediction(s) for team {team!r}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` and the ``submit`` sub-app to the root app."""
    app.command("evaluate")(evaluate)
    submit_app = typer.Typer(no_args_is_help=True, help="Write leaderboard submissions.")
    submit_app.command("navsim")(submit_navsim)
    app.add_typer(submit_app, name="submit", help="Write leaderboard submissions (NAVSIM pickle).")
