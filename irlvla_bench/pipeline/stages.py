"""Stage bookkeeping: a stage is done when its marker names the same inputs hash and every output it listed
still exists. The hash chains through upstream stages, so changing a setting reruns that stage and what follows.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irlvla_bench.io.atomic import write_json_atomic

MARKER = ".stage.json"


def stable_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class StageResult:
    name: str
    directory: Path
    inputs_hash: str
    outputs: tuple[str, ...]  # relative to the pipeline's output folder
    seconds: float
    skipped: bool
    details: dict


def _marker(directory: Path) -> Path:
    return directory / MARKER


def stage_is_valid(directory: Path, inputs_hash: str, root: Path) -> dict | None:
    """The marker if the stage's output is complete for these inputs, else None."""
    path = _marker(directory)
    if not path.is_file():
        return None
    try:
        marker = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # a torn or foreign marker means "not done": the stage runs again
    if marker.get("inputs_hash") != inputs_hash:
        return None
    if not all((root / rel).exists() for rel in marker.get("outputs", [])):
        return None
    return marker


def write_marker(directory: Path, name: str, inputs_hash: str, outputs: list[str], seconds: float,
                 details: dict) -> None:
    write_json_atomic(_marker(directory), {
        "stage": name, "inputs_hash": inputs_hash, "outputs": sorted(outputs), "seconds": round(seconds, 3),
        "finished_unix": time.time(), "details": details,
    })
