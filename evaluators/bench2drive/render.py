"""Terminal rendering of a report: the two tables of Bench2Drive's README, errors, strict findings."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .config import ABILITY_NAMES
from .score import Bench2DriveReport


def _fmt(x: float | None, scale: float = 1.0) -> str:
    return "n/a" if x is None else f"{scale * x:.2f}"


def closed_loop_table(report: Bench2DriveReport, title: str = "Closed-loop metrics") -> Table:
    t = Table(title=title)
    for col in ("Driving Score ↑", "Success Rate ↑", "Efficiency ↑", "Comfort ↑"):
        t.add_column(col, justify="right")
    m = report.merge
    t.add_row(_fmt(m.driving_score), _fmt(m.success_rate, 100), _fmt(report.efficiency.value),
              _fmt(report.smoothness.value, 100))
    return t


def ability_table(report: Bench2DriveReport, title: str = "Multi-Ability Results (%) ↑") -> Table:
    # No "Method" column (one run): the six README columns then fit an 80-column terminal unwrapped.
    t = Table(title=title)
    for name in ABILITY_NAMES + ("Mean",):
        t.add_column(name, justify="right", no_wrap=True)
    ab = report.abilities
    t.add_row(*(_fmt(ab.scores.get(a), 100) for a in ABILITY_NAMES), _fmt(ab.mean, 100))
    return t


def render(report: Bench2DriveReport, console: Console | None = None, max_items: int = 8) -> None:
    console = console or Console()
    m = report.merge
    console.print(closed_loop_table(report))
    console.print(ability_table(report))
    console.print(f"records: {m.eval_num} ({m.n_success} successes) from {len(report.results.files)} checkpoint "
                  f"file(s); routes in XML: {len(report.routes)}; not evaluated: {len(report.abilities.crashed)}; "
                  f"divisor: {m.divisor}", highlight=False)
    for e in report.errors:
        console.print(f"[bold red]{escape(e.metric)} undefined[/]: {escape(e.reason)}\n"
                      f"  official tool: {escape(e.official)}", highlight=False)
    if report.findings is not None:
        console.print(f"[bold]strict: {len(report.findings)} finding(s)[/]")
        for f in report.findings:
            console.print(f"[yellow]{escape(f.kind)}[/]: {escape(f.summary)}\n  effect: {escape(f.effect)}",
                          highlight=False)
            for item in f.items[:max_items]:
                console.print(f"    - {item}", highlight=False, markup=False)
            if len(f.items) > max_items:
                console.print(f"    ... {len(f.items) - max_items} more (see the JSON output)", highlight=False)
