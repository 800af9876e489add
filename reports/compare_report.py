"""Write a :class:`reports.compare.Comparison` as a report folder.

```
OUT/comparison.json     every number (meta, headline, two-stage EPDMS interval over mappings, per-metric/stage
                        statistics, top tokens, per-token deltas)
OUT/comparison.md       the same tables as Markdown
OUT/index.html          self-contained page (inline CSS, figures referenced relatively)
OUT/figures/forest.png            per-metric delta with bootstrap 95% intervals, one panel per stage
OUT/figures/score_delta_hist.png  per-token score deltas
OUT/figures/bev/{regression,gain}_NN_<token>.png  bird's-eye plots of the biggest regressions and gains
```

Every file is written atomically. ``figures/`` belongs to the report: PNGs there that this run did not write
(e.g. the gallery of an earlier comparison into the same folder) are removed, so the page and the folder agree.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from irlvla_bench.io.atomic import atomic_path, write_json_atomic, write_text_atomic
from reports.bev import SceneLookup, find_scene, parse_poses, render_bev
from reports.compare import (CONFIDENCE, METRICS, SHORT_NAMES, STAGES, TIE_TOLERANCE, Comparison, changed_metrics,
                             top_changes)

GALLERY_K = 6
REPORT_SCHEMA = "irlvla-comparison/v1"


@dataclass(frozen=True)
class ReportFiles:
    out_dir: Path
    json: Path
    markdown: Path
    html: Path
    figures: tuple[Path, ...]


@dataclass(frozen=True)
class GalleryItem:
    kind: str  # "regression" | "gain"
    rank: int
    token: str
    log_name: str
    stage: str
    score_a: float
    score_b: float
    score_delta: float
    changed: str
    image: str  # relative to the report folder
    note: str


# ----------------------------------------------------------------------------------------------------------------
# Numbers


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> null (browsers and strict parsers reject NaN), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_clean(r) for r in frame.to_dict(orient="records")]


def comparison_to_dict(c: Comparison, gallery: Sequence[GalleryItem] = (), figures: Sequence[str] = ()) -> dict:
    token_columns = ["token", "log_name", "stage", "frame_type"] + [
        f"{m}_{side}" for m in METRICS for side in ("a", "b", "delta")]
    return _clean({
        "schema": REPORT_SCHEMA,
        "a": asdict(c.a), "b": asdict(c.b),
        "delta_convention": "B - A (every metric is higher-is-better: positive = B better); "
                            f"ties: |delta| <= {TIE_TOLERANCE:g}",
        "n_boot": c.n_boot, "seed": c.seed,
        "epdms": {"a": c.epdms_a, "b": c.epdms_b, "delta": c.epdms_delta, "source": "summary.json epdms"},
        "mapping_headline": mapping_headline(c),
        "mapping_stats": c.mapping_stats,
        "headline": _records(c.headline),
        "num_paired": c.num_paired,
        "stats": _records(c.stats),
        "top_gains": _records(c.top_gains), "top_regressions": _records(c.top_regressions),
        "only_in_a": list(c.only_in_a), "only_in_b": list(c.only_in_b),
        "failed_in_a": list(c.failed_in_a), "failed_in_b": list(c.failed_in_b),
        "notes": list(c.notes),
        "gallery": [asdict(g) for g in gallery],
        "figures": list(figures),
        "tokens": _records(c.pairs[token_columns]),
    })


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _fmt_signed(value: float, digits: int = 4) -> str:
    return "–" if not math.isfinite(value) else f"{value:+.{digits}f}"


def _fmt_p(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"


def mapping_headline(c: Comparison) -> str | None:
    """The two-stage EPDMS delta with its interval over mappings in one line; None when there is none."""
    m = c.mapping_stats
    if m is None:
        return None
    return (f"Two-stage EPDMS delta {_fmt_signed(m['delta'])}, {CONFIDENCE:.0%} CI over {int(m['n'])} mappings "
            f"[{_fmt_signed(m['ci_low'])}, {_fmt_signed(m['ci_high'])}], Wilcoxon p {_fmt_p(m['p_value'])}, "
            f"wins/ties/losses {int(m['wins'])}/{int(m['ties'])}/{int(m['losses'])}")


def _mapping_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    m = c.mapping_stats
    header = ["mappings", "mean A", "mean B", "delta", "95% CI", "Wilcoxon p", "win / tie / loss"]
    mark = " *" if _significant(m) else ""
    return header, [[str(int(m["n"])), _fmt(m["mean_a"]), _fmt(m["mean_b"]), _fmt_signed(m["delta"]) + mark,
                     f"[{_fmt_signed(m['ci_low'])}, {_fmt_signed(m['ci_high'])}]", _fmt_p(m["p_value"]),
                     f"{int(m['wins'])} / {int(m['ties'])} / {int(m['losses'])}"]]


def _significant(row: pd.Series | dict[str, Any]) -> bool:
    return math.isfinite(row["ci_low"]) and (row["ci_low"] > 0 or row["ci_high"] < 0)


def _stats_rows(c: Comparison, stage: str) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "n", "mean A", "mean B", "delta", "95% CI", "Wilcoxon p", "win / tie / loss"]
    rows = []
    for _, r in c.stats[c.stats["stage"] == stage].iterrows():
        mark = " *" if _significant(r) else ""
        rows.append([f"{SHORT_NAMES[r['metric']]} ({r['metric']})", str(int(r["n"])), _fmt(r["mean_a"]),
                     _fmt(r["mean_b"]), _fmt_signed(r["delta"]) + mark,
                     f"[{_fmt_signed(r['ci_low'])}, {_fmt_signed(r['ci_high'])}]", _fmt_p(r["p_value"]),
                     f"{int(r['wins'])} / {int(r['ties'])} / {int(r['losses'])}"])
    return header, rows


def _headline_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    # One row per metric, one (A, B, delta) column block per summary section: 30 long rows hide the pattern.
    titles = {"metrics": "", "stage_one": "stage one ", "stage_two": "stage two "}
    sections = [s for s in titles if (c.headline["section"] == s).any()]
    header = ["metric"] + [f"{titles[s]}{x}" for s in sections for x in ("A", "B", "delta")]
    table = c.headline.set_index(["section", "metric"])
    rows = []
    for metric in METRICS:
        if not any((s, metric) in table.index for s in sections):
            continue
        row = [SHORT_NAMES[metric]]
        for section in sections:
            if (section, metric) in table.index:
                r = table.loc[(section, metric)]
                row += [_fmt(r["a"]), _fmt(r["b"]), _fmt_signed(r["delta"])]
            else:
                row += ["–"] * 3
        rows.append(row)
    return header, rows


def _token_rows(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = ["token", "log", "stage", "score A", "score B", "delta", "changed"]
    rows = [[str(r["token"]), str(r["log_name"]), str(r["stage"]), _fmt(r["score_a"]), _fmt(r["score_b"]),
             _fmt_signed(r["score_delta"]), str(r["changed"])] for _, r in frame.iterrows()]
    return header, rows


def _info_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["", "A", "B"]
    fields = [("evaluation", "path"), ("agent", "label"), ("checkpoint", None), ("split", "split"),
              ("aggregation", "aggregation"), ("traffic", "traffic"), ("scorer", "scorer_version"),
              ("tokens", "num_tokens"), ("failed", "num_failed"), ("EPDMS (summary)", "epdms")]
    rows = []
    for title, attr in fields:
        if attr is None:
            values = [str(x.agent.get("checkpoint") or "–") for x in (c.a, c.b)]
        else:
            values = [_fmt(getattr(x, attr)) if attr == "epdms" else str(getattr(x, attr)) for x in (c.a, c.b)]
        rows.append([title, *values])
    return header, rows


# ----------------------------------------------------------------------------------------------------------------
# Figures


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def forest_plot(c: Comparison, path: Path) -> Path:
    """Mean delta and bootstrap interval per metric, one panel per stage with paired tokens."""
    stages = [s for s in STAGES if (c.stats["stage"] == s).any()] or ["all"]
    fig = Figure(figsize=(4.2 * len(stages), 4.6), dpi=110)
    FigureCanvasAgg(fig)
    for k, stage in enumerate(stages):
        ax = fig.add_subplot(1, len(stages), k + 1)
        table = c.stats[c.stats["stage"] == stage].set_index("metric")
        metrics = [m for m in METRICS if m in table.index]
        ys = np.arange(len(metrics))[::-1]
        for y, metric in zip(ys, metrics):
            r = table.loc[metric]
            colour = "#2ca02c" if r["ci_low"] > 0 else "#d62728" if r["ci_high"] < 0 else "#7f7f7f"
            ax.plot([r["ci_low"], r["ci_high"]], [y, y], color=colour, linewidth=2.0)
            ax.plot([r["delta"]], [y], marker="D" if metric == "score" else "o", color=colour, markersize=5)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_yticks(ys, [SHORT_NAMES[m] for m in metrics], fontsize=8)
        ax.set_title(f"stage: {stage} (n = {int(table['n'].max()) if len(table) else 0})", fontsize=9)
        ax.set_xlabel("mean delta B - A with 95% bootstrap CI", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        if not metrics:
            ax.text(0.5, 0.5, "no paired tokens", transform=ax.transAxes, ha="center")
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def score_histogram(c: Comparison, path: Path) -> Path:
    deltas = c.pairs["score_delta"].to_numpy(dtype=float)
    deltas = deltas[np.isfinite(deltas)]
    fig = Figure(figsize=(6.4, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if deltas.size:
        ties = int(np.sum(np.abs(deltas) <= TIE_TOLERANCE))
        ax.hist(deltas, bins=min(60, max(10, deltas.size // 5)), color="#4c72b0", edgecolor="white")
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.axvline(float(deltas.mean()), color="#d62728", linewidth=1.2, linestyle="--",
                   label=f"mean {deltas.mean():+.4f}")
        ax.legend(fontsize=8)
        ax.set_title(f"per-token score delta B - A ({deltas.size} tokens, {ties} ties)", fontsize=9)
    else:
        ax.text(0.5, 0.5, "no paired tokens", transform=ax.transAxes, ha="center")
    ax.set_xlabel("score delta", fontsize=8)
    ax.set_ylabel("tokens", fontsize=8)
    return _save(fig, path)


def _safe_name(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", token)[:80]


def _scene(c: Comparison, log_name: str, token: str) -> SceneLookup:
    # Both runs are of the same split; their caches may live in different places, so try both.
    first = find_scene(c.a.cache_dir, log_name, token)
    if first.case is not None or not c.b.cache_dir or c.b.cache_dir == c.a.cache_dir:
        return first
    second = find_scene(c.b.cache_dir, log_name, token)
    return second if second.case is not None else first


def render_gallery(c: Comparison, out_dir: Path, *, k: int = GALLERY_K) -> list[GalleryItem]:
    gains, regressions = top_changes(c.pairs, k=k)
    by_token = c.pairs.set_index("token")
    items = []
    for kind, frame in (("regression", regressions), ("gain", gains)):
        for rank, (_, row) in enumerate(frame.iterrows(), start=1):
            token = str(row["token"])
            pair = by_token.loc[token]
            scene = _scene(c, str(row["log_name"]), token)
            changed = changed_metrics(pair)
            relative = f"figures/bev/{kind}_{rank:02d}_{_safe_name(token)}.png"
            render_bev(
                out_dir / relative, scene=scene,
                trajectories={f"A: {c.a.label}": parse_poses(pair["poses_a"]),
                              f"B: {c.b.label}": parse_poses(pair["poses_b"])},
                title=f"{kind} #{rank}: {token} ({row['stage']} stage)",
                subtitle=f"score A {row['score_a']:.3f} → B {row['score_b']:.3f} ({row['score_delta']:+.3f})"
                         + (f"\n{changed}" if changed else ""),
            )
            items.append(GalleryItem(kind=kind, rank=rank, token=token, log_name=str(row["log_name"]),
                                     stage=str(row["stage"]), score_a=float(row["score_a"]),
                                     score_b=float(row["score_b"]), score_delta=float(row["score_delta"]),
                                     changed=str(row["changed"]), image=relative, note=scene.note))
    return items


# ----------------------------------------------------------------------------------------------------------------
# Markdown and HTML


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _stages_with_stats(c: Comparison) -> list[str]:
    return [s for s in STAGES if (c.stats["stage"] == s).any()]


def render_markdown(c: Comparison, gallery: Sequence[GalleryItem]) -> str:
    parts = [f"# Regression comparison: {c.b.label} vs {c.a.label}", "",
             f"Delta = B - A; every metric is higher-is-better, so a positive delta is a gain for B. "
             f"EPDMS (summaries): A {_fmt(c.epdms_a)}, B {_fmt(c.epdms_b)}, **delta {_fmt_signed(c.epdms_delta)}**. "
             f"{c.num_paired} paired tokens; 95% paired bootstrap intervals ({c.n_boot} resamples, seed {c.seed}); "
             "Wilcoxon signed-rank test over tokens; `*` marks an interval excluding zero.", ""]
    line = mapping_headline(c)
    if line:
        parts += [f"**{line}.**", ""]
    parts += [*(f"- {n}" for n in c.notes), "", "## Evaluations", "", _md_table(*_info_rows(c)), "",
              "## Headline (from summary.json)", "", _md_table(*_headline_rows(c)), ""]
    if c.mapping_stats is not None:
        parts += ["## Two-stage EPDMS over mappings", "", _md_table(*_mapping_rows(c)), ""]
    for stage in _stages_with_stats(c):
        parts += [f"## Token-level statistics, stage: {stage}", "", _md_table(*_stats_rows(c, stage)), ""]
    parts += ["![forest plot](figures/forest.png)", "", "![score delta histogram](figures/score_delta_hist.png)", ""]
    parts += ["## Biggest regressions", "", _md_table(*_token_rows(c.top_regressions)) if len(c.top_regressions)
              else "No token regressed.", "", "## Biggest gains", "",
              _md_table(*_token_rows(c.top_gains)) if len(c.top_gains) else "No token improved.", ""]
    if gallery:
        parts += ["## Gallery", ""]
        parts += [f"![{g.kind} {g.rank}: {g.token}]({g.image})" for g in gallery]
        parts += [""]
    parts += _unpaired_md(c)
    return "\n".join(parts) + "\n"


def _unpaired_md(c: Comparison) -> list[str]:
    out = []
    for title, tokens in (("Only in A", c.only_in_a), ("Only in B", c.only_in_b),
                          ("Failed in A (present in both)", c.failed_in_a),
                          ("Failed in B (present in both)", c.failed_in_b)):
        if tokens:
            out += [f"## {title} ({len(tokens)})", "", ", ".join(f"`{t}`" for t in tokens), ""]
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0} th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.pos{color:#1a7f37} .neg{color:#c62828} .note{background:#fff8e1;border-left:4px solid #f0c000;padding:6px 10px}
.headline{font-size:1.15em} figure{display:inline-block;margin:6px;vertical-align:top}
figure img{max-width:100%;border:1px solid #ddd} figcaption{font-size:12px;max-width:420px}
.gallery img{width:420px} code{font-size:12px}
"""


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(value: str) -> str:
        css = []
        if re.fullmatch(r"[+\-–\d.e\[\], */]+", value):
            css.append("num")
        if value.startswith("+") and value != "+0.0000":
            css.append("pos")
        elif value.startswith("-") and value != "-0.0000":
            css.append("neg")
        cls = f' class="{" ".join(css)}"' if css else ""
        return f"<td{cls}>{html.escape(value)}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_mapping_headline(c: Comparison) -> list[str]:
    line = mapping_headline(c)
    if line is None:
        return []
    delta = c.mapping_stats["delta"]
    sign = "pos" if delta > 0 else "neg" if delta < 0 else ""
    return [f"<p class=\"headline\"><b class=\"{sign}\">{html.escape(line)}</b></p>"]


def render_html(c: Comparison, gallery: Sequence[GalleryItem]) -> str:
    e = html.escape
    sign = "pos" if c.epdms_delta > 0 else "neg" if c.epdms_delta < 0 else ""
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>Comparison: {e(c.b.label)} vs {e(c.a.label)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Regression comparison: {e(c.b.label)} vs {e(c.a.label)}</h1>",
        f"<p class=\"headline\">EPDMS (from the summaries): A {_fmt(c.epdms_a)}, B {_fmt(c.epdms_b)}, "
        f"<b class=\"{sign}\">delta {_fmt_signed(c.epdms_delta)}</b> &middot; {c.num_paired} paired tokens</p>",
        *_html_mapping_headline(c),
        "<p>Delta = B - A; every metric is higher-is-better, so a positive delta is a gain for B. Intervals are "
        f"paired bootstrap 95% percentile intervals of the mean delta ({c.n_boot} resamples, seed {c.seed}); "
        "p-values are two-sided Wilcoxon signed-rank tests over tokens; * marks an interval excluding zero.</p>",
        *(f"<p class=\"note\">{e(n)}</p>" for n in c.notes),
        "<h2>Evaluations</h2>", _html_table(*_info_rows(c)),
        "<h2>Headline (from summary.json)</h2>", _html_table(*_headline_rows(c)),
    ]
    if c.mapping_stats is not None:
        parts += ["<h2>Two-stage EPDMS over mappings</h2>", _html_table(*_mapping_rows(c))]
    for stage in _stages_with_stats(c):
        parts += [f"<h2>Token-level statistics, stage: {e(stage)}</h2>", _html_table(*_stats_rows(c, stage))]
    parts += [
        "<h2>Figures</h2>",
        "<figure><img src=\"figures/forest.png\" alt=\"per-metric delta forest plot\">"
        "<figcaption>Mean delta per metric with 95% bootstrap intervals (green: B better, red: B worse, "
        "grey: interval includes zero).</figcaption></figure>",
        "<figure><img src=\"figures/score_delta_hist.png\" alt=\"score delta histogram\">"
        "<figcaption>Per-token score delta.</figcaption></figure>",
        "<h2>Biggest regressions</h2>",
        _html_table(*_token_rows(c.top_regressions)) if len(c.top_regressions) else "<p>No token regressed.</p>",
        "<h2>Biggest gains</h2>",
        _html_table(*_token_rows(c.top_gains)) if len(c.top_gains) else "<p>No token improved.</p>",
    ]
    for kind, title in (("regression", "Gallery: biggest regressions"), ("gain", "Gallery: biggest gains")):
        items = [g for g in gallery if g.kind == kind]
        if not items:
            continue
        parts.append(f"<h2>{title}</h2><div class=\"gallery\">")
        for g in items:
            caption = f"#{g.rank} {g.token} ({g.stage}): {g.score_a:.3f} → {g.score_b:.3f} ({g.score_delta:+.3f})"
            if g.changed:
                caption += f"; {g.changed}"
            if g.note:
                caption += f"; {g.note}"
            parts.append(f"<figure><img src=\"{e(g.image)}\" alt=\"{e(kind)} {g.rank}\">"
                         f"<figcaption>{e(caption)}</figcaption></figure>")
        parts.append("</div>")
    for title, tokens in (("Only in A", c.only_in_a), ("Only in B", c.only_in_b),
                          ("Failed in A (present in both)", c.failed_in_a),
                          ("Failed in B (present in both)", c.failed_in_b)):
        if tokens:
            parts.append(f"<h2>{e(title)} ({len(tokens)})</h2><p>"
                         + ", ".join(f"<code>{e(t)}</code>" for t in tokens) + "</p>")
    parts.append("<p>All numbers: <a href=\"comparison.json\">comparison.json</a> &middot; "
                 "<a href=\"comparison.md\">comparison.md</a></p></body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------------------------------------------


def write_comparison_report(comparison: Comparison, out_dir: str | Path, *, gallery_k: int = GALLERY_K) -> ReportFiles:
    """Write the report folder (see the module docstring); returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [forest_plot(comparison, out_dir / "figures" / "forest.png"),
               score_histogram(comparison, out_dir / "figures" / "score_delta_hist.png")]
    gallery = render_gallery(comparison, out_dir, k=gallery_k)
    figures += [out_dir / g.image for g in gallery]
    written = {p.resolve() for p in figures}
    for stale in (out_dir / "figures").rglob("*.png"):
        if stale.resolve() not in written:
            stale.unlink()

    relative = [p.relative_to(out_dir).as_posix() for p in figures]
    json_path, md_path, html_path = out_dir / "comparison.json", out_dir / "comparison.md", out_dir / "index.html"
    write_json_atomic(json_path, comparison_to_dict(comparison, gallery, relative), indent=1)
    write_text_atomic(md_path, render_markdown(comparison, gallery))
    # The page goes last: when it exists, everything it links to exists.
    write_text_atomic(html_path, render_html(comparison, gallery))
    return ReportFiles(out_dir=out_dir, json=json_path, markdown=md_path, html=html_path, figures=tuple(figures))
