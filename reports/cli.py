"""``report`` command group. One typer app that report commands are added to (``compare`` here; others such
as ``fidelity`` register on the same ``app``). Exit status 2 on malformed or incomparable input.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from irlvla_bench.errors import InputError

app = typer.Typer(help="Reports over evaluation outputs (regression comparison, ...).", no_args_is_help=True,
                  add_completion=False)
console = Console(width=None if sys.stdout.isatty() else 170)
err_console = Console(stderr=True)


@app.callback()
def _group() -> None:
    """Reports over evaluation outputs."""


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@app.command("compare")
def compare(
    eval_a: Annotated[Path, typer.Argument(metavar="EVAL_A", help="Evaluation folder A, the reference (summary.json + rows.parquet).")],
    eval_b: Annotated[Path, typer.Argument(metavar="EVAL_B", help="Evaluation folder B, compared against A (delta = B - A).")],
    out: Annotated[Path, typer.Option("--out", help="Report folder (index.html, comparison.json/.md, figures/).")],
    n_boot: Annotated[int, typer.Option("--n-boot", min=1, help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Tokens listed per direction.")] = 10,
) -> None:
    """Paired regression comparison of two evaluations of the same split, scorer and traffic policy."""
    from reports.compare import SHORT_NAMES, compare_evaluations
    from reports.compare_report import mapping_headline, write_comparison_report

    try:
        comparison = compare_evaluations(eval_a, eval_b, n_boot=n_boot, seed=seed, top_k=top_k)
    except InputError as exc:
        _fail(str(exc))
    files = write_comparison_report(comparison, out)

    table = Table(title=f"B = {comparison.b.label} vs A = {comparison.a.label} (stage: all, "
                        f"{comparison.num_paired} paired tokens)")
    for column in ("metric", "mean A", "mean B", "delta", "95% CI", "p", "win/tie/loss"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for _, r in comparison.stats[comparison.stats["stage"] == "all"].iterrows():
        table.add_row(SHORT_NAMES[r["metric"]], f"{r['mean_a']:.4f}", f"{r['mean_b']:.4f}", f"{r['delta']:+.4f}",
                      f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]", f"{r['p_value']:.3g}",
                      f"{int(r['wins'])}/{int(r['ties'])}/{int(r['losses'])}")
    console.print(table)
    console.print(f"EPDMS (summaries): A {comparison.epdms_a:.4f}, B {comparison.epdms_b:.4f}, "
                  f"delta {comparison.epdms_delta:+.4f}", highlight=False)
    headline = mapping_headline(comparison)
    if headline is not None:
        console.print(escape(headline), highlight=False)
    console.print(f"report: {escape(str(files.html))}", highlight=False)


def _mount_fidelity() -> None:
    # The fidelity report lives in its own module (it imports torch only inside its command).
    from reports.fidelity_cli import register

    register(app)


_mount_fidelity()
