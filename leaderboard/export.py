"""Write a ranking (``store.ranking``) as Markdown, self-contained HTML or CSV, each atomically.

CSV carries every column at full precision (it is the machine-readable one); Markdown and HTML show the
human view: one ranked table of the final numbers, then the two stages' sub-metrics for two-stage runs.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from irlvla_bench.io.atomic import write_text_atomic

from .summary import SUB_METRICS

SHORT = {"no_at_fault_collisions": "NC", "drivable_area_compliance": "DAC", "driving_direction_compliance": "DDC",
         "traffic_light_compliance": "TLC", "ego_progress": "EP", "time_to_collision_within_bound": "TTC",
         "lane_keeping": "LK", "history_comfort": "HC", "two_frame_extended_comfort": "EC", "score": "EPDMS"}
STAGE_LABELS = {"stage_one": "stage one", "stage_two": "stage two"}
# Columns shown as text (left-aligned); every other column is a number. Decided by header, not by content: a
# git commit of only digits is still text.
TEXT_HEADERS = frozenset({"agent", "checkpoint", "commit", "stage"})


@dataclass(frozen=True)
class View:
    """A rendered ranking: a title line, a context line and tables of (header, rows) of display strings."""

    title: str
    context: str
    tables: list[tuple[str, list[str], list[list[str]]]]   # (caption, header, rows)


def number(value: Any, digits: int = 4) -> str:
    """Metric for display; undefined values (one-stage EC, missing stages) show as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.{digits}f}"


def checkpoint_label(row: pd.Series) -> str:
    if isinstance(row["checkpoint"], str) and row["checkpoint"]:
        label = Path(row["checkpoint"]).name
    else:
        label = "-"
    if isinstance(row["checkpoint_sha256"], str):
        label += f" ({row['checkpoint_sha256'][:8]})"
    return label


def commit_label(row: pd.Series) -> str:
    if not isinstance(row["git_commit"], str):
        return "-"
    return row["git_commit"][:10] + ("+dirty" if row["git_dirty"] else "")


def build_view(table: pd.DataFrame, title: str = "Leaderboard") -> View:
    """The display tables of a ranking (shared by Markdown, HTML and the CLI's rich table)."""
    if table.empty:
        return View(title, "no evaluations match", [])
    first = table.iloc[0]
    context = (f"scorer {first['scorer_version']} · split {first['split']} · traffic {first['traffic']} · "
               f"{first['aggregation'].replace('_', '-')} · {len(table)} evaluation{'s' * (len(table) != 1)}")
    header = ["#", "agent", "checkpoint", "commit", "EPDMS"] + [SHORT[m] for m in SUB_METRICS] + [
        "EC", "stage one", "stage two", "tokens", "failed"]
    rows = [[str(r["rank"]), r["agent"], checkpoint_label(r), commit_label(r), number(r["epdms"])]
            + [number(r[m]) for m in SUB_METRICS]
            + [number(r["two_frame_extended_comfort"]), number(r["stage_one_score"]),
               number(r["stage_two_score"]), str(r["num_tokens"]), str(r["num_failed"])]
            for _, r in table.iterrows()]
    tables = [("Ranked by EPDMS", header, rows)]
    staged = table[table["aggregation"] == "two_stage"]
    if not staged.empty:
        stage_header = ["#", "agent", "stage"] + [SHORT[m] for m in SUB_METRICS] + ["EC", "EPDMS"]
        stage_rows = [[str(r["rank"]), r["agent"], label]
                      + [number(r[f"{stage}_{m}"]) for m in SUB_METRICS + ("two_frame_extended_comfort", "score")]
                      for _, r in staged.iterrows() for stage, label in STAGE_LABELS.items()]
        tables.append(("Stages", stage_header, stage_rows))
    return View(title, context, tables)


# ---------------------------------------------------------------------------------------------------------------
# Renderers


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def to_markdown(table: pd.DataFrame, title: str = "Leaderboard") -> str:
    view = build_view(table, title)
    lines = [f"# {view.title}", "", view.context, ""]
    for caption, header, rows in view.tables:
        align = ["---" if name in TEXT_HEADERS else "---:" for name in header]
        lines += [f"## {caption}", "", "| " + " | ".join(map(_md_cell, header)) + " |", "|" + "|".join(align) + "|"]
        lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 2rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
td.key { font-weight: bold; }
"""


def to_html(table: pd.DataFrame, title: str = "Leaderboard") -> str:
    """A self-contained page (inline CSS, no scripts, no external assets)."""
    view = build_view(table, title)
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{esc(view.title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
             f"<h1>{esc(view.title)}</h1>", f"<p>{esc(view.context)}</p>"]
    for caption, header, rows in view.tables:
        key = header.index("EPDMS")
        parts += [f"<h2>{esc(caption)}</h2>", "<table>",
                  "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
        for row in rows:
            cells = []
            for i, cell in enumerate(row):
                classes = ([] if header[i] in TEXT_HEADERS else ["num"]) + (["key"] if i == key else [])
                attr = f' class="{" ".join(classes)}"' if classes else ""
                cells.append(f"<td{attr}>{esc(cell)}</td>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts += ["</tbody>", "</table>"]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------------
# Files


def write_markdown(table: pd.DataFrame, path: str | Path, title: str = "Leaderboard") -> None:
    write_text_atomic(path, to_markdown(table, title))


def write_html(table: pd.DataFrame, path: str | Path, title: str = "Leaderboard") -> None:
    write_text_atomic(path, to_html(table, title))


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Every ranking column; floats are written with repr precision so they read back exactly."""
    write_text_atomic(path, table.to_csv(index=False))


def export(table: pd.DataFrame, *, md: str | Path | None = None, html_path: str | Path | None = None,
           csv: str | Path | None = None, title: str = "Leaderboard") -> Sequence[Path]:
    """Write whichever of the three formats are asked for; returns the paths written."""
    written = []
    for path, writer in ((md, lambda p: write_markdown(table, p, title)),
                         (html_path, lambda p: write_html(table, p, title)), (csv, lambda p: write_csv(table, p))):
        if path is not None:
            writer(path)
            written.append(Path(path))
    return written
