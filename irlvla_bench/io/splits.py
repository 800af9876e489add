"""Split / scene-filter definitions selected by name (NAVSIM's ``train_test_split/<name>.yaml`` with its
``scene_filter/<name>.yaml``) and the scenes they select, with NAVSIM's ``filter_scenes`` /
``filter_synthetic_scenes`` semantics (windows of ``num_history + num_future`` frames every ``frame_interval``
frames; synthetic scenes tied to a first-stage scene by the token of its last frame).

A dataset root keeps its split files under ``<root>/navsim_config/train_test_split/`` (a directory hydra can
add to its search path); a YAML path works too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irlvla_bench.errors import InputError

SPLIT_DIR = Path("navsim_config") / "train_test_split"
TWO_STAGE_DIR_DEFAULT = "navhard_two_stage"


@dataclass(frozen=True)
class SceneFilterSpec:
    """NAVSIM's ``SceneFilter`` fields."""

    num_history_frames: int = 4
    num_future_frames: int = 10
    frame_interval: int | None = None
    has_route: bool = True
    max_scenes: int | None = None
    log_names: tuple[str, ...] | None = None
    tokens: tuple[str, ...] | None = None
    include_synthetic_scenes: bool = False
    synthetic_scene_tokens: tuple[str, ...] | None = None
    reactive_synthetic_initial_tokens: tuple[str, ...] | None = None
    non_reactive_synthetic_initial_tokens: tuple[str, ...] | None = None

    @property
    def num_frames(self) -> int:
        return self.num_history_frames + self.num_future_frames


@dataclass(frozen=True)
class SplitSpec:
    name: str
    data_split: str
    scene_filter: SceneFilterSpec
    # navhard-style ``reactive_all_mapping``: (now, prev, ((second-stage now, second-stage prev), ...))
    mappings: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = ()
    source: str = ""

    @property
    def is_two_stage(self) -> bool:
        return bool(self.mappings)


# ----------------------------------------------------------------------------------------------------------------
# YAML (written by hand so that every token is quoted: OmegaConf reads 4e12345678901234 as a float)


def _q(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _list(key: str, values, indent: str = "") -> list[str]:
    if values is None:
        return [f"{indent}{key}: null"]
    if not values:
        return [f"{indent}{key}: []"]
    return [f"{indent}{key}:"] + [f"{indent}  - {_q(v)}" for v in values]


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_split(directory: str | Path, spec: SplitSpec) -> Path:
    """Write ``<dir>/<name>.yaml`` and ``<dir>/scene_filter/<name>.yaml`` in NAVSIM's hydra format."""
    directory = Path(directory)
    f = spec.scene_filter
    lines = [
        "_target_: navsim.common.dataclasses.SceneFilter",
        "_convert_: 'all'",
        f"num_history_frames: {f.num_history_frames}",
        f"num_future_frames: {f.num_future_frames}",
        f"frame_interval: {'null' if f.frame_interval is None else f.frame_interval}",
        f"has_route: {'true' if f.has_route else 'false'}",
        f"max_scenes: {'null' if f.max_scenes is None else f.max_scenes}",
        f"include_synthetic_scenes: {'true' if f.include_synthetic_scenes else 'false'}",
    ]
    lines += _list("log_names", f.log_names)
    lines += _list("tokens", f.tokens)
    for key in ("synthetic_scene_tokens", "reactive_synthetic_initial_tokens", "non_reactive_synthetic_initial_tokens"):
        lines += _list(key, getattr(f, key))
    _atomic_text(directory / "scene_filter" / f"{spec.name}.yaml", "\n".join(lines) + "\n")
    top = ["defaults:", f"  - scene_filter: {spec.name}", "", f"data_split: {spec.data_split}"]
    if spec.mappings:
        top.append("reactive_all_mapping:")
        for now, prev, pairs in spec.mappings:
            top += [f"  - - {_q(now)}", f"    - {_q(prev)}"]
            if pairs:
                top.append(f"    - - - {_q(pairs[0][0])}")
                top.append(f"        - {_q(pairs[0][1])}")
                for a, b in pairs[1:]:
                    top += [f"      - - {_q(a)}", f"        - {_q(b)}"]
            else:
                top.append("    - []")
    path = directory / f"{spec.name}.yaml"
    _atomic_text(path, "\n".join(top) + "\n")
    return path


def _read_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(str(path), "<file>", "no such file") from None
    except yaml.YAMLError as exc:
        raise InputError(str(path), "<file>", f"invalid YAML: {exc}") from None


def _tokens(value: Any, source: str, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError(source, key, "expected a list")
    for i, v in enumerate(value):
        if not isinstance(v, str):
            raise InputError(source, f"{key}[{i}]", f"expected a quoted string token, got {type(v).__name__} {v!r}")
    return tuple(value)


def split_dir(data_root: str | Path) -> Path:
    return Path(data_root) / SPLIT_DIR


def available_splits(data_root: str | Path) -> list[str]:
    d = split_dir(data_root)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_split(name: str, data_root: str | Path) -> SplitSpec:
    """A split by name (``<root>/navsim_config/train_test_split/<name>.yaml``) or by YAML path."""
    candidate = Path(name)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        path = candidate
    else:
        path = split_dir(data_root) / f"{name}.yaml"
        if not path.exists():
            known = available_splits(data_root)
            raise InputError(str(path), "split", f"unknown split {name!r}; this dataset defines {known}")
    src = str(path)
    top = _read_yaml(path)
    if not isinstance(top, dict):
        raise InputError(src, "<root>", "expected a mapping")
    if "data_split" not in top:
        raise InputError(src, "data_split", "missing key")
    filter_name = None
    for item in top.get("defaults") or []:
        if isinstance(item, dict) and "scene_filter" in item:
            filter_name = item["scene_filter"]
    if filter_name is None:
        raise InputError(src, "defaults.scene_filter", "missing (NAVSIM selects the scene filter here)")
    fpath = path.parent / "scene_filter" / f"{filter_name}.yaml"
    fdata = _read_yaml(fpath)
    fsrc = str(fpath)
    if not isinstance(fdata, dict):
        raise InputError(fsrc, "<root>", "expected a mapping")

    def integer(key: str, default):
        v = fdata.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            raise InputError(fsrc, key, f"expected an integer, got {v!r}")
        return v

    scene_filter = SceneFilterSpec(
        num_history_frames=integer("num_history_frames", 4),
        num_future_frames=integer("num_future_frames", 10),
        frame_interval=integer("frame_interval", None),
        has_route=bool(fdata.get("has_route", True)),
        max_scenes=integer("max_scenes", None),
        log_names=_tokens(fdata.get("log_names"), fsrc, "log_names"),
        tokens=_tokens(fdata.get("tokens"), fsrc, "tokens"),
        include_synthetic_scenes=bool(fdata.get("include_synthetic_scenes", False)),
        synthetic_scene_tokens=_tokens(fdata.get("synthetic_scene_tokens"), fsrc, "synthetic_scene_tokens"),
        reactive_synthetic_initial_tokens=_tokens(fdata.get("reactive_synthetic_initial_tokens"), fsrc,
                                                  "reactive_synthetic_initial_tokens"),
        non_reactive_synthetic_initial_tokens=_tokens(fdata.get("non_reactive_synthetic_initial_tokens"), fsrc,
                                                      "non_reactive_synthetic_initial_tokens"),
    )
    if scene_filter.num_history_frames < 1:
        raise InputError(fsrc, "num_history_frames", "must be >= 1")
    mappings = []
    for i, m in enumerate(top.get("reactive_all_mapping") or []):
        where = f"reactive_all_mapping[{i}]"
        if not isinstance(m, list) or len(m) != 3 or not isinstance(m[2], list):
            raise InputError(src, where, "expected [now, prev, [[second-stage now, prev], ...]]")
        now, prev = _tokens([m[0], m[1]], src, where)
        pairs = []
        for j, pair in enumerate(m[2]):
            if not isinstance(pair, list) or len(pair) != 2:
                raise InputError(src, f"{where}[2][{j}]", "expected a [now, prev] pair")
            pairs.append(_tokens(pair, src, f"{where}[2][{j}]"))
        mappings.append((now, prev, tuple(pairs)))
    return SplitSpec(path.stem, str(top["data_split"]), scene_filter, tuple(mappings), src)


# ----------------------------------------------------------------------------------------------------------------
# Paths and scene enumeration


@dataclass(frozen=True)
class DataPaths:
    """NAVSIM's ``default_dataset_paths`` resolved under a data root (two-stage splits read their own folder)."""

    root: Path
    navsim_log_path: Path
    original_sensor_path: Path
    synthetic_scenes_path: Path | None
    synthetic_sensor_path: Path | None
    maps_root: Path


def dataset_paths(data_root: str | Path, split: SplitSpec) -> DataPaths:
    root = Path(data_root)
    two = root / (split.name if (root / split.name).is_dir() else TWO_STAGE_DIR_DEFAULT)
    if split.scene_filter.include_synthetic_scenes and (two / "openscene_meta_datas").is_dir():
        logs = two / "openscene_meta_datas"
    else:
        logs = root / "navsim_logs" / split.data_split
    synthetic = two / "synthetic_scene_pickles" if split.scene_filter.include_synthetic_scenes else None
    return DataPaths(root, logs, root / "sensor_blobs" / split.data_split, synthetic,
                     two / "sensor_blobs" if synthetic else None, root / "maps")


@dataclass(frozen=True)
class SceneRef:
    """One scene to cache: an original window of a log, or a synthetic scene pickle."""

    token: str
    log_name: str
    kind: str  # "original" | "synthetic"
    path: str  # log pickle or synthetic scene pickle
    start: int = 0  # first frame of the window in the log
    num_history_frames: int = 4
    num_future_frames: int = 10


@dataclass
class SceneListing:
    split: SplitSpec
    paths: DataPaths
    scenes: list[SceneRef] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (what, why) for unreadable inputs


def list_scenes(data_root: str | Path, split: SplitSpec, *, tokens: list[str] | None = None) -> SceneListing:
    """Scenes selected by a split, in log order. Unreadable logs are reported in ``problems`` (caching carries on);
    requested ``tokens`` that the split does not contain raise ``InputError``."""
    from irlvla_bench.io.navsim_logs import read_log_raw, read_synthetic_scene

    paths = dataset_paths(data_root, split)
    listing = SceneListing(split, paths)
    f = split.scene_filter
    if not paths.navsim_log_path.is_dir():
        raise InputError(str(paths.navsim_log_path), "navsim_log_path", f"log folder of split {split.name!r} missing")
    log_files = sorted(paths.navsim_log_path.glob("*.pkl"))
    if f.log_names is not None:
        wanted = set(f.log_names)
        log_files = [p for p in log_files if p.stem in wanted]
    token_filter = set(f.tokens) if f.tokens is not None else None
    interval = f.frame_interval or f.num_frames
    final_tokens: set[str] = set()
    for log_path in log_files:
        try:
            raw = read_log_raw(log_path)
        except InputError as exc:
            listing.problems.append((str(log_path), str(exc)))
            continue
        for start in range(0, len(raw), interval):
            window = raw[start:start + f.num_frames]
            if len(window) < f.num_frames:
                continue
            cur = window[f.num_history_frames - 1]
            if not isinstance(cur, dict) or "token" not in cur or "roadblock_ids" not in cur:
                listing.problems.append((f"{log_path}:frame[{start + f.num_history_frames - 1}]",
                                         str(InputError(str(log_path), f"frame[{start + f.num_history_frames - 1}]",
                                                        "missing token/roadblock_ids"))))
                continue
            if f.has_route and len(cur["roadblock_ids"]) == 0:
                continue
            if token_filter is not None and cur["token"] not in token_filter:
                continue
            listing.scenes.append(SceneRef(cur["token"], log_path.stem, "original", str(log_path), start,
                                           f.num_history_frames, f.num_future_frames))
            last = window[-1]
            if isinstance(last, dict) and "token" in last:
                final_tokens.add(last["token"])
            if f.max_scenes is not None and len(listing.scenes) >= f.max_scenes:
                break
    if f.include_synthetic_scenes and paths.synthetic_scenes_path is not None:
        syn_filter = set(f.synthetic_scene_tokens) if f.synthetic_scene_tokens is not None else None
        syn_dir = paths.synthetic_scenes_path
        if not syn_dir.is_dir():
            raise InputError(str(syn_dir), "synthetic_scenes_path", "folder missing")
        for scene_path in sorted(syn_dir.glob("*.pkl")):
            try:
                scene = read_synthetic_scene(scene_path)
            except InputError as exc:
                listing.problems.append((str(scene_path), str(exc)))
                continue
            meta = scene.metadata
            if syn_filter is not None and meta["initial_token"] not in syn_filter:
                continue
            if f.log_names is not None and meta["log_name"] not in f.log_names:
                continue
            if syn_filter is None and meta.get("corresponding_original_scene") not in final_tokens:
                continue
            listing.scenes.append(SceneRef(meta["initial_token"], meta["log_name"], "synthetic", str(scene_path), 0,
                                           len(scene.frames), 8))
    if tokens is not None:
        have = {s.token for s in listing.scenes}
        missing = [t for t in tokens if t not in have]
        if missing:
            raise InputError(split.source, "tokens", f"not in split {split.name!r}: {missing[:5]}"
                             + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        keep = set(tokens)
        listing.scenes = [s for s in listing.scenes if s.token in keep]
    return listing
