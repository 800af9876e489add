"""The pipeline's index page: every stage with its time, every report linked, every figure shown."""

from __future__ import annotations

import html
import json
from pathlib import Path

from irlvla_bench.io.atomic import write_text_atomic

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}
figure{display:inline-block;margin:8px;vertical-align:top}figure img{max-width:360px;border:1px solid #ddd}
figcaption{font-size:12px;color:#555;max-width:360px;word-break:break-all}"""


def _link(out: Path, rel: str) -> str:
    return f'<a href="{html.escape(rel)}">{html.escape(rel)}</a>' if (out / rel).exists() else html.escape(rel)


def write_index(ctx) -> Path:
    out = ctx.out
    rows = []
    for result in ctx.results.values():
        details = {k: v for k, v in result.details.items() if k != "path"}
        link = _link(out, result.details["path"]) if "path" in result.details else ""
        rows.append(f"<tr><td>{html.escape(result.name)}</td><td>{'skipped (done)' if result.skipped else 'ran'}</td>"
                    f"<td>{result.seconds:.1f}</td><td>{link}</td>"
                    f"<td><code>{html.escape(json.dumps(details, default=str))}</code></td></tr>")
    pages = sorted(p.relative_to(out).as_posix() for p in (out / "reports").rglob("*.html")) \
        if (out / "reports").is_dir() else []
    figures = sorted(p.relative_to(out).as_posix() for p in (out / "reports").rglob("*.png")) \
        if (out / "reports").is_dir() else []
    summaries = sorted(p.relative_to(out).as_posix() for p in (out / "eval").glob("*/summary.json")) \
        if (out / "eval").is_dir() else []
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>irlvla-bench pipeline</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>irlvla-bench pipeline: preset {html.escape(ctx.config.name)}</h1>",
        "<h2>Stages</h2><table><tr><th>stage</th><th>status</th><th>seconds</th><th>output</th><th>details</th></tr>",
        *rows, "</table>",
        "<h2>Reports</h2><ul>", *[f"<li>{_link(out, p)}</li>" for p in pages], "</ul>",
        "<h2>Evaluations</h2><ul>", *[f"<li>{_link(out, p)}</li>" for p in summaries], "</ul>",
        "<h2>Figures</h2>",
        *[f'<figure><a href="{html.escape(p)}"><img src="{html.escape(p)}" alt="{html.escape(p)}"></a>'
          f"<figcaption>{html.escape(p)}</figcaption></figure>" for p in figures],
        "</body></html>",
    ]
    path = out / "index.html"
    write_text_atomic(path, "\n".join(parts))
    return path
