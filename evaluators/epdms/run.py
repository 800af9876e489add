"""Score files: what ``irlvla-bench score`` does, as a library function.

Every input is read and validated before anything is written, so a bad file leaves no partial output; each
result file is written atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd

from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.groups import GroupScores, pool_groups, score_groups
from evaluators.epdms.results import case_document, group_document
from evaluators.epdms.score import SUB_METRICS, FrameScores, frame_table, score_frame
from irlvla_bench.errors import InputError
from irlvla_bench.io.atomic import write_json_atomic
from irlvla_bench.io.scoring_case import load_any
from irlvla_bench.types import SceneGroup, ScoringCase

DATASET_STEM = "dataset"


def expand_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders expanded to their ``*.json`` / ``*.json.gz`` inputs (results skipped)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.name.endswith((".json", ".json.gz")) and ".result" not in p.name)
            if not found:
                raise InputError(str(path), "<folder>", "no .json or .json.gz inputs in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InputError(str(path), "<file>", "no such file or folder")
    return files


def stem_of(path: Path) -> str:
    name = path.name
    for suffix in (".json.gz", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass
class RunResult:
    cases: list[tuple[Path, FrameScores]] = field(default_factory=list)
    groups: list[tuple[Path, GroupScores]] = field(default_factory=list)
    dataset: GroupScores | None = None
    written: list[Path] = field(default_factory=list)

    def case_table(self) -> pd.DataFrame:
        tables = [frame_table(scores) for _, scores in self.cases]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def score_paths(paths: Sequence[str | Path], *, out_dir: str | Path | None = None, traffic: str = "log_replay",
                mode: str = "submission", config: EPDMSConfig = NAVSIM_V2, diagnostics: bool = False,
                progress: Callable[[str], None] | None = None) -> RunResult:
    files = expand_inputs(paths)
    loaded: list[tuple[Path, ScoringCase | SceneGroup]] = [(f, load_any(f)) for f in files]
    stems = [stem_of(f) for f, _ in loaded]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise InputError(str(files[0].parent), "<inputs>", f"two inputs would write the same result file: {dup}")

    result = RunResult()
    for path, item in loaded:
        if progress:
            progress(path.name)
        if isinstance(item, SceneGroup):
            result.groups.append((path, score_groups([item], traffic=traffic, mode=mode, config=config)))
        else:
            result.cases.append((path, score_frame(item, traffic=traffic, mode=mode, config=config)))
    if len(result.groups) > 1:
        result.dataset = pool_groups([g for _, g in result.groups], config)

    for path, scores in result.cases:
        target = Path(out_dir or path.parent) / f"{stem_of(path)}.result.json"
        write_json_atomic(target, case_document(scores, traffic, diagnostics=diagnostics))
        result.written.append(target)
    for path, scores in result.groups:
        target = Path(out_dir or path.parent) / f"{stem_of(path)}.result.json"
        write_json_atomic(target, group_document(scores, traffic))
        result.written.append(target)
    if result.dataset is not None:
        target = Path(out_dir or result.groups[0][0].parent) / f"{DATASET_STEM}.result.json"
        write_json_atomic(target, group_document(result.dataset, traffic))
        result.written.append(target)
    return result


__all__ = ["RunResult", "expand_inputs", "pool_groups", "score_paths", "stem_of", "SUB_METRICS"]
