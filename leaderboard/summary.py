"""Read and validate one evaluation output folder (``docs/evaluation-schema.md``, ``irlvla-evaluation/v1``).

Everything is checked before anything reaches the database, so a bad folder is refused whole with an
:class:`~irlvla_bench.errors.InputError` naming the file and the field. The metric names are spelled out here
rather than imported from ``evaluators.epdms`` on purpose: the schema document is the contract, and the
leaderboard must not pay for (or depend on) importing the numba scorer.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from irlvla_bench.errors import InputError

SCHEMA_ID = "irlvla-evaluation/v1"
SUB_METRICS = (
    "no_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance",
    "traffic_light_compliance", "ego_progress", "time_to_collision_within_bound", "lane_keeping",
    "history_comfort",
)
EXTENDED_COMFORT = "two_frame_extended_comfort"
METRICS = SUB_METRICS + (EXTENDED_COMFORT, "score")
STAGES = ("final", "stage_one", "stage_two")
AGGREGATIONS = ("one_stage", "two_stage")

ROW_TEXT_COLUMNS = ("token", "log_name", "frame_type", "stage", "status", "error", "poses")
ROW_FLOAT_COLUMNS = SUB_METRICS + (EXTENDED_COMFORT, "multiplicative_metrics_prod", "score", "weight",
                                   "seconds_agent")
ROW_COLUMNS = ROW_TEXT_COLUMNS[:6] + ROW_FLOAT_COLUMNS[:-1] + ("poses", "seconds_agent")
ROW_VALUES = {"frame_type": ("original", "synthetic"), "stage": ("first", "second"), "status": ("ok", "failed")}

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GIT_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
# Metrics are fractions; a value a hair outside [0, 1] is float noise from averaging, more is a broken run.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Evaluation:
    """One validated evaluation folder, ready to store."""

    source: Path                      # the folder it was read from
    summary: dict[str, Any]           # summary.json as read (stored verbatim)
    scorer_version: str
    split: str
    aggregation: str
    traffic: str
    agent_name: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    seed: int
    config_hash: str
    git_commit: str | None
    git_dirty: bool
    created_utc: str
    num_tokens: int
    num_failed: int
    epdms: float
    metrics: dict[str, dict[str, float | None]]   # stage ("final", "stage_one", "stage_two") -> name -> value
    rows: pd.DataFrame                            # ROW_COLUMNS, one row per token

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What makes two summaries the same evaluation (NULLs as '' so they compare equal)."""
        return (self.config_hash, self.agent_name, self.checkpoint_sha256 or "", self.git_commit or "")


def load_evaluation(eval_dir: str | Path, *, allow_failed: bool = False) -> Evaluation:
    """Read ``eval_dir/summary.json`` and its rows table; raise :class:`InputError` on anything off-schema."""
    folder = Path(eval_dir)
    summary_path = folder / "summary.json"
    if not folder.is_dir():
        raise InputError(str(folder), "-", "not a folder (expected an `irlvla-bench evaluate --out` folder)")
    if not summary_path.is_file():
        raise InputError(str(summary_path), "-", "missing: the folder is not a finished evaluation")
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(str(summary_path), "-", f"not valid JSON ({exc})") from exc
    check = _Checker(str(summary_path), summary)
    return _build(folder, check, allow_failed)


class _Checker:
    """Typed field access on the summary; every failure names the file and the dotted field."""

    def __init__(self, source: str, summary: Any):
        if not isinstance(summary, dict):
            raise InputError(source, "-", f"expected a JSON object, got {type(summary).__name__}")
        self.source = source
        self.summary = summary

    def fail(self, field: str, problem: str) -> InputError:
        return InputError(self.source, field, problem)

    def get(self, field: str, *, required: bool = True) -> Any:
        node: Any = self.summary
        parts = field.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                raise self.fail(".".join(parts[:depth]), f"expected an object, got {type(node).__name__}")
            if part not in node:
                if required:
                    raise self.fail(field, "missing")
                return None
            node = node[part]
        return node

    def text(self, field: str, *, nullable: bool = False, pattern: re.Pattern | None = None) -> str | None:
        value = self.get(field, required=not nullable)
        if value is None and nullable:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, f"expected a non-empty string{' or null' if nullable else ''}, got {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(field, f"{value!r} does not look like {_describe(pattern)}")
        return value

    def integer(self, field: str, *, minimum: int | None = None) -> int:
        value = self.get(field)
        # bool is an int subclass in Python; `true` is not a count.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(field, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(field, f"must be >= {minimum}, got {value}")
        return value

    def fraction(self, field: str, value: Any, *, nullable: bool) -> float | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            if nullable:
                return None
            raise self.fail(field, "missing value (null/NaN); the run scored nothing for it")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(field, f"expected a number, got {value!r}")
        value = float(value)
        if not (-_TOLERANCE <= value <= 1 + _TOLERANCE):
            raise self.fail(field, f"expected a value in [0, 1], got {value!r}")
        return value

    def metric_block(self, field: str, aggregation: str) -> dict[str, float | None]:
        block = self.get(field)
        if not isinstance(block, dict):
            raise self.fail(field, f"expected an object of metrics, got {type(block).__name__}")
        values: dict[str, float | None] = {}
        for name in METRICS:
            if name not in block:
                raise self.fail(f"{field}.{name}", "missing")
            # One-stage runs have no extended comfort (the schema writes NaN/null there); all else is required.
            nullable = name == EXTENDED_COMFORT and aggregation == "one_stage"
            values[name] = self.fraction(f"{field}.{name}", block[name], nullable=nullable)
        for name in sorted(set(block) - set(METRICS)):
            # Unknown extra metrics are kept (newer runners may add some) but must still be numbers.
            value = block[name]
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise self.fail(f"{field}.{name}", f"expected a number or null, got {value!r}")
            values[name] = None if value is None or math.isnan(value) else float(value)
        return values


def _describe(pattern: re.Pattern) -> str:
    return {_SHA256.pattern: "a lowercase hex sha256 (64 characters)",
            _GIT_COMMIT.pattern: "a lowercase hex git commit"}.get(pattern.pattern, pattern.pattern)


def _build(folder: Path, check: _Checker, allow_failed: bool) -> Evaluation:
    schema = check.get("schema")
    if schema != SCHEMA_ID:
        raise check.fail("schema", f"expected {SCHEMA_ID!r}, got {schema!r}")
    aggregation = check.text("aggregation")
    if aggregation not in AGGREGATIONS:
        raise check.fail("aggregation", f"expected one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    agent = check.get("agent")
    if not isinstance(agent, dict):
        raise check.fail("agent", f"expected an object, got {type(agent).__name__}")
    git_dirty = check.get("git_dirty", required=False)
    if git_dirty is not None and not isinstance(git_dirty, bool):
        raise check.fail("git_dirty", f"expected true/false, got {git_dirty!r}")
    created = check.text("created_utc")
    try:
        datetime.fromisoformat(created)
    except ValueError as exc:
        raise check.fail("created_utc", f"not an ISO 8601 time: {created!r}") from exc

    num_tokens = check.integer("num_tokens", minimum=0)
    num_failed = check.integer("num_failed", minimum=0)
    if num_failed > num_tokens:
        raise check.fail("num_failed", f"{num_failed} failed tokens out of num_tokens={num_tokens}")
    failed = check.get("failed", required=False) or []
    if not isinstance(failed, list) or len(failed) != num_failed:
        raise check.fail("failed", f"expected a list of num_failed={num_failed} entries, got {failed!r:.80}")
    if num_failed and not allow_failed:
        first = failed[0] if isinstance(failed[0], dict) else {}
        raise check.fail("num_failed", f"{num_failed} of {num_tokens} tokens failed (first: "
                                       f"{first.get('token')!r}: {first.get('error')!r}); its EPDMS covers only "
                                       "the scored tokens. Fix the agent, or pass --allow-failed to add it anyway")

    metrics = {"final": check.metric_block("metrics", aggregation)}
    for stage in ("stage_one", "stage_two"):
        if aggregation == "two_stage":
            metrics[stage] = check.metric_block(stage, aggregation)
        elif check.get(stage, required=False) is not None:
            raise check.fail(stage, "must be null for a one_stage aggregation")
    epdms = check.fraction("epdms", check.get("epdms"), nullable=False)
    if not math.isclose(epdms, metrics["final"]["score"], rel_tol=0, abs_tol=1e-12):
        raise check.fail("epdms", f"{epdms!r} differs from metrics.score={metrics['final']['score']!r}")

    rows = load_rows(folder, num_tokens=num_tokens, num_failed=num_failed)
    return Evaluation(
        source=folder.resolve(), summary=check.summary,
        scorer_version=check.text("scorer_version"), split=check.text("split"), aggregation=aggregation,
        traffic=check.text("traffic"), agent_name=check.text("agent.name"),
        checkpoint=check.text("agent.checkpoint", nullable=True),
        checkpoint_sha256=check.text("agent.checkpoint_sha256", nullable=True, pattern=_SHA256),
        seed=check.integer("seed"), config_hash=check.text("config_hash", pattern=_SHA256),
        git_commit=check.text("git_commit", nullable=True, pattern=_GIT_COMMIT), git_dirty=bool(git_dirty),
        created_utc=created, num_tokens=num_tokens, num_failed=num_failed, epdms=epdms, metrics=metrics,
        rows=rows,
    )


def load_rows(folder: Path, *, num_tokens: int, num_failed: int) -> pd.DataFrame:
    """The per-token table: ``rows.parquet`` when present (exact floats), else ``rows.csv``."""
    parquet, csv = folder / "rows.parquet", folder / "rows.csv"
    if parquet.is_file():
        source = parquet
        try:
            table = pd.read_parquet(parquet)
        except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
            raise InputError(str(parquet), "-", f"unreadable parquet ({exc})") from exc
    elif csv.is_file():
        source = csv
        # Text columns must stay text: an empty `error` is "", not NaN, and a token "NA" is a token.
        text = {c: str for c in ROW_TEXT_COLUMNS}
        try:
            table = pd.read_csv(csv, dtype=text, keep_default_na=False,
                                na_values={c: ["", "NaN", "nan"] for c in ROW_FLOAT_COLUMNS})
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(str(csv), "-", f"unreadable CSV ({exc})") from exc
    else:
        raise InputError(str(folder / "rows.parquet"), "-", "missing (and no rows.csv either)")

    for column in ROW_COLUMNS:
        if column not in table.columns:
            raise InputError(str(source), column, "missing column")
    table = table.loc[:, list(ROW_COLUMNS)].copy()
    for column in ROW_TEXT_COLUMNS:
        table[column] = table[column].fillna("").astype(str)
    for column in ROW_FLOAT_COLUMNS:
        try:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(float)
        except (ValueError, TypeError) as exc:
            raise InputError(str(source), column, f"expected numbers ({exc})") from exc
    for column, allowed in ROW_VALUES.items():
        bad = sorted(set(table[column]) - set(allowed))
        if bad:
            raise InputError(str(source), column, f"unexpected values {bad[:5]}; expected {', '.join(allowed)}")
    if (table["token"] == "").any():
        raise InputError(str(source), "token", "empty token")
    if len(table) != num_tokens:
        raise InputError(str(source), "-", f"{len(table)} rows but summary.json says num_tokens={num_tokens}")
    failed = int((table["status"] == "failed").sum())
    if failed != num_failed:
        raise InputError(str(source), "status", f"{failed} failed rows but summary.json says num_failed={num_failed}")
    return table.reset_index(drop=True)
