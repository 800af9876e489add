"""Per-task checkpoint JSONs -> validated per-route records, in the order merge_route_json.py reads them."""

from __future__ import annotations

import fnmatch
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .config import DEFAULT_CONFIG, ABILITY_NAMES, Bench2DriveConfig
from .errors import Bench2DriveInputError

# Infraction lists the tools read by name; the rest are only counted.
_REQUIRED_INFRACTIONS = ("min_speed_infractions", "stop_infraction", "red_light")

FileOrder = str | Sequence[str]  # "filesystem", "sorted", or an explicit list of file names


@dataclass(frozen=True)
class RouteRecord:
    """One RouteRecord of a checkpoint file (``_checkpoint.records[i]``), validated."""

    route_id: str  # "RouteScenario_<xml id>_rep<k>"
    status: str
    infractions: Mapping[str, tuple[str, ...]]  # file key order
    score_route: float  # may be the int 0 / 100 as written
    score_penalty: float | None
    score_composed: float
    save_name: str
    scenario_name: str | None
    town_name: str | None
    route_length: float | None
    source_file: str  # checkpoint file name the record came from
    position: int  # position in that file's _checkpoint.records
    index: int  # position of the route in its task (removed by merge)
    raw: Mapping[str, Any]  # the record as written minus "index": what merged.json carries

    @property
    def xml_id(self) -> str:
        # ability_benchmark.py matches records to XML routes with route_id.split('_')[1].
        return self.route_id.split("_")[1]

    def infraction_count(self, key: str) -> int:
        return len(self.infractions.get(key, ()))


@dataclass(frozen=True)
class SkippedFile:
    name: str
    reason: str
    official: str  # what merge_route_json.py does with the same file


@dataclass(frozen=True)
class TaskFile:
    name: str
    entry_status: str | None
    progress: tuple[int, int] | None
    records: tuple[RouteRecord, ...]


@dataclass(frozen=True)
class ResultSet:
    """The checkpoint files of a results folder in merge order."""

    directory: str
    order: str  # how the file order was chosen
    files: tuple[TaskFile, ...]
    skipped: tuple[SkippedFile, ...]

    @property
    def records(self) -> tuple[RouteRecord, ...]:
        return tuple(r for f in self.files for r in f.records)

    @property
    def file_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.files)


def _number(value: Any, path: Path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Bench2DriveInputError(path, field, f"expected a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise Bench2DriveInputError(path, field, f"not a finite number: {value!r}")
    return value


def _optional_number(value: Any, path: Path, field: str) -> float | None:
    return None if value is None else _number(value, path, field)


def parse_record(data: Any, path: Path, position: int) -> RouteRecord:
    """Validate one record dict; errors name the file and ``records[i].field``."""
    where = f"_checkpoint.records[{position}]"
    if not isinstance(data, dict):
        raise Bench2DriveInputError(path, where, f"expected an object, got {type(data).__name__}")

    def need(key: str) -> Any:
        if key not in data:
            raise Bench2DriveInputError(path, f"{where}.{key}", "missing")
        return data[key]

    route_id = need("route_id")
    if not isinstance(route_id, str) or len(route_id.split("_")) < 2 or not route_id.split("_")[1]:
        raise Bench2DriveInputError(path, f"{where}.route_id",
                                    f"expected 'RouteScenario_<id>_rep<k>', got {route_id!r}")
    index = need("index")
    if isinstance(index, bool) or not isinstance(index, int):
        raise Bench2DriveInputError(path, f"{where}.index", f"expected an int, got {index!r}")
    status = need("status")
    if not isinstance(status, str):
        raise Bench2DriveInputError(path, f"{where}.status", f"expected a string, got {status!r}")
    save_name = need("save_name")
    if not isinstance(save_name, str) or not save_name:
        raise Bench2DriveInputError(path, f"{where}.save_name", f"expected a non-empty string, got {save_name!r}")

    infractions = need("infractions")
    if not isinstance(infractions, dict):
        raise Bench2DriveInputError(path, f"{where}.infractions", "expected an object of lists")
    parsed_inf: dict[str, tuple[str, ...]] = {}
    for key, msgs in infractions.items():
        if not isinstance(msgs, list) or not all(isinstance(m, str) for m in msgs):
            raise Bench2DriveInputError(path, f"{where}.infractions.{key}", "expected a list of message strings")
        parsed_inf[key] = tuple(msgs)
    for key in _REQUIRED_INFRACTIONS:
        if key not in parsed_inf:
            raise Bench2DriveInputError(path, f"{where}.infractions.{key}", "missing")

    scores = need("scores")
    if not isinstance(scores, dict):
        raise Bench2DriveInputError(path, f"{where}.scores", "expected an object")
    for key in ("score_route", "score_composed"):
        if key not in scores:
            raise Bench2DriveInputError(path, f"{where}.scores.{key}", "missing")
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}

    raw = {k: v for k, v in data.items() if k != "index"}
    return RouteRecord(
        route_id=route_id,
        status=status,
        infractions=MappingProxyType(parsed_inf),
        score_route=_number(scores["score_route"], path, f"{where}.scores.score_route"),
        score_penalty=_optional_number(scores.get("score_penalty"), path, f"{where}.scores.score_penalty"),
        score_composed=_number(scores["score_composed"], path, f"{where}.scores.score_composed"),
        save_name=save_name,
        scenario_name=data.get("scenario_name") if isinstance(data.get("scenario_name"), str) else None,
        town_name=data.get("town_name") if isinstance(data.get("town_name"), str) else None,
        route_length=_optional_number(meta.get("route_length"), path, f"{where}.meta.route_length"),
        source_file=path.name,
        position=position,
        index=index,
        raw=MappingProxyType(raw),
    )


def _looks_like_ability_output(data: Any) -> bool:
    return isinstance(data, dict) and "_checkpoint" not in data and all(k in data for k in ABILITY_NAMES)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise Bench2DriveInputError(path, None, f"malformed JSON ({exc})") from None
    except UnicodeDecodeError as exc:
        raise Bench2DriveInputError(path, None, f"not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise Bench2DriveInputError(path, None, f"cannot read ({exc.strerror or exc})") from None


def parse_task_file(path: Path, data: Any = None) -> TaskFile:
    """Validate a checkpoint file (``data`` is its parsed JSON when the caller already read it)."""
    if data is None:
        data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("_checkpoint"), dict):
        raise Bench2DriveInputError(path, "_checkpoint", "missing: not a leaderboard checkpoint file")
    records = data["_checkpoint"].get("records")
    if not isinstance(records, list):
        raise Bench2DriveInputError(path, "_checkpoint.records", "missing or not a list")
    progress = data["_checkpoint"].get("progress")
    prog = None
    if isinstance(progress, list) and len(progress) == 2 and all(isinstance(p, int) for p in progress):
        prog = (progress[0], progress[1])
    entry = data.get("entry_status") if isinstance(data.get("entry_status"), str) else None
    return TaskFile(path.name, entry, prog, tuple(parse_record(r, path, i) for i, r in enumerate(records)))


def candidate_files(results_dir: Path) -> list[str]:
    """``glob.glob(f'{folder}/*.json')`` names, in the order the filesystem lists them."""
    try:
        with os.scandir(results_dir) as it:
            # glob's '*' never matches a leading dot; it does match directories (merge would then crash).
            return [e.name for e in it if not e.name.startswith(".") and fnmatch.fnmatchcase(e.name, "*.json")]
    except FileNotFoundError:
        raise Bench2DriveInputError(results_dir, None, "results folder not found") from None
    except NotADirectoryError:
        raise Bench2DriveInputError(results_dir, None, "expected the folder holding the checkpoint JSONs") from None


def _ordered(names: list[str], file_order: FileOrder, results_dir: Path) -> tuple[list[str], str]:
    if isinstance(file_order, str):
        if file_order == "filesystem":
            return names, "filesystem (os.scandir, what glob.glob returns on this machine)"
        if file_order == "sorted":
            return sorted(names), "sorted by name"
        raise ValueError(f"file_order must be 'filesystem', 'sorted' or a list of names, got {file_order!r}")
    wanted = [os.path.basename(n) for n in file_order]
    if len(set(wanted)) != len(wanted):
        raise Bench2DriveInputError(results_dir, "file_order", "a file name is listed twice")
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise Bench2DriveInputError(results_dir, "file_order", f"no such checkpoint file(s): {unknown}")
    return wanted + [n for n in names if n not in wanted], "explicit order"


def load_results(results_dir: str | Path, file_order: FileOrder = "filesystem",
                 config: Bench2DriveConfig = DEFAULT_CONFIG) -> ResultSet:
    """Read every checkpoint JSON of ``results_dir`` the way merge_route_json.py does.

    The file order matters: it is the summation order of the driving score and, for duplicated routes, decides
    which record the ability tool uses.  "filesystem" reproduces the official tool run on the same folder; pass
    the list of names when reproducing a run made elsewhere.
    """
    results_dir = Path(results_dir)
    names, order = _ordered(candidate_files(results_dir), file_order, results_dir)
    files: list[TaskFile] = []
    skipped: list[SkippedFile] = []
    prefix = str(results_dir).rstrip("/") or "/"
    for name in names:
        path = results_dir / name
        if config.merged_skip_substring in os.path.join(prefix, name):
            skipped.append(SkippedFile(name, f"path contains {config.merged_skip_substring!r}",
                                       "skipped by merge_route_json.py as well"))
            continue
        if path.is_dir():
            skipped.append(SkippedFile(name, "a directory", "merge_route_json.py: IsADirectoryError"))
            continue
        data = _read_json(path)
        if _looks_like_ability_output(data):
            # Written next to merged.json by ability_benchmark.py; the official merge is not protected
            # against it and crashes when re-run (KeyError: '_checkpoint').
            skipped.append(SkippedFile(name, "output of ability_benchmark.py, not a checkpoint",
                                       "merge_route_json.py: KeyError: '_checkpoint' (crash)"))
            continue
        files.append(parse_task_file(path, data))
    if not files:
        raise Bench2DriveInputError(results_dir, None, "no leaderboard checkpoint JSON found (expected *.json "
                                                       "files with a '_checkpoint' object)")
    return ResultSet(str(results_dir), order, tuple(files), tuple(skipped))
