"""Cache a split: every selected scene -> ``<out>/<log_name>/<token>.json.gz`` (a validated scoring case), plus
``metadata.csv``, ``cache_summary.json`` and, for two-stage splits, one scene group per mapping under ``groups/``.

Resumable (existing cases are skipped unless ``overwrite``), atomic (temp file + ``os.replace``), carries on
past bad tokens and reports them with their reason. With ``workers > 1`` the same per-token function runs in
Ray tasks. Caching zero tokens is an error (NAVSIM has been seen to "succeed" with an empty cache).
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from irlvla_bench.errors import InputError
from irlvla_bench.io.splits import SceneRef, SplitSpec, list_scenes, load_split

CASE_SUFFIX = ".json.gz"


class NothingCachedError(RuntimeError):
    """No token of the split ended up in the cache."""


@dataclass(frozen=True)
class TokenOutcome:
    token: str
    log_name: str
    kind: str
    status: str  # "cached" | "skipped" | "failed"
    reason: str = ""
    path: str = ""
    seconds: float = 0.0


@dataclass
class CacheSummary:
    split: str
    out_dir: str
    outcomes: list[TokenOutcome] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # unreadable inputs found while listing
    groups: int = 0
    seconds: float = 0.0
    workers: int = 1

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def cached(self) -> int:
        return self._count("cached")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    def to_dict(self) -> dict:
        return {
            "split": self.split, "out_dir": self.out_dir, "workers": self.workers, "seconds": round(self.seconds, 3),
            "cached": self.cached, "skipped": self.skipped, "failed": self.failed, "groups": self.groups,
            "failures": [{"token": o.token, "log_name": o.log_name, "reason": o.reason} for o in self.outcomes
                         if o.status == "failed"],
            "skips": [{"token": o.token, "reason": o.reason} for o in self.outcomes if o.status == "skipped"],
            "input_problems": [{"input": a, "reason": b} for a, b in self.problems],
        }


def case_path(out_dir: str | Path, log_name: str, token: str) -> Path:
    return Path(out_dir) / log_name / f"{token}{CASE_SUFFIX}"


def _write_json_gz(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=5) as handle:
        json.dump(data, handle, separators=(",", ":"))
    os.replace(tmp, path)


def cache_one(ref: SceneRef, maps_root: str, out_dir: str, overwrite: bool = False, selector=None) -> TokenOutcome:
    """Cache one scene; never raises for bad data (the outcome carries the reason)."""
    from irlvla_bench.caching.metric_cache import CachingError, build_case_dict
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.io.nuplan_map import load_map
    from irlvla_bench.io.scoring_case import parse_case

    t0 = time.perf_counter()
    path = case_path(out_dir, ref.log_name, ref.token)
    if path.exists() and not overwrite:
        return TokenOutcome(ref.token, ref.log_name, ref.kind, "skipped", "already cached", str(path))
    try:
        scene = load_scene(ref)
        nmap = load_map(maps_root, scene.map_name)
        data = build_case_dict(scene, nmap, selector=selector)
        parse_case(data, source=str(path))  # the contract is checked on every case before it is written
        _write_json_gz(path, data)
    except (InputError, CachingError) as exc:
        return TokenOutcome(ref.token, ref.log_name, ref.kind, "failed", str(exc), "", time.perf_counter() - t0)
    except Exception as exc:  # a bug must not lose the other tokens; the reason names it
        tb = traceback.extract_tb(exc.__traceback__)[-1]
        reason = f"{type(exc).__name__}: {exc} (at {Path(tb.filename).name}:{tb.lineno})"
        return TokenOutcome(ref.token, ref.log_name, ref.kind, "failed", reason, "", time.perf_counter() - t0)
    return TokenOutcome(ref.token, ref.log_name, ref.kind, "cached", "", str(path), time.perf_counter() - t0)


def cache_batch(refs: list[SceneRef], maps_root: str, out_dir: str, overwrite: bool = False) -> list[TokenOutcome]:
    return [cache_one(r, maps_root, out_dir, overwrite) for r in refs]


def _run_local(refs, maps_root, out_dir, overwrite, tick) -> list[TokenOutcome]:
    outcomes = []
    for ref in refs:
        outcomes.append(cache_one(ref, maps_root, out_dir, overwrite))
        tick(1)
    return outcomes


def _run_ray(refs, maps_root, out_dir, overwrite, workers: int, tick, batch_size: int) -> list[TokenOutcome]:
    from irlvla_bench.parallel import map_batches

    batches = [refs[i:i + batch_size] for i in range(0, len(refs), batch_size)]
    outcomes: list[TokenOutcome] = []

    def on_batch(results: list[TokenOutcome], size: int) -> None:
        outcomes.extend(results)
        tick(size)

    map_batches(cache_batch, batches, (maps_root, out_dir, overwrite), workers=workers, on_batch=on_batch)
    return outcomes


def cache_split(data_root: str | Path, split: str | SplitSpec, out_dir: str | Path, *, workers: int = 1,
                tokens: list[str] | None = None, overwrite: bool = False, progress: bool = False,
                batch_size: int = 4, on_progress: Callable[[int, int], None] | None = None) -> CacheSummary:
    """Cache every scene of ``split`` under ``out_dir``; see the module docstring."""
    t0 = time.perf_counter()
    spec = load_split(split, data_root) if isinstance(split, str) else split
    listing = list_scenes(data_root, spec, tokens=tokens)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    maps_root = str(listing.paths.maps_root)
    refs = listing.scenes
    total = len(refs)
    done = [0]

    def run(tick):
        if workers > 1 and total > 1:
            return _run_ray(refs, maps_root, str(out), overwrite, workers, tick, batch_size)
        return _run_local(refs, maps_root, str(out), overwrite, tick)

    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(f"caching {spec.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=False) as bar:
            task = bar.add_task("cache", total=total)

            def tick(n):
                done[0] += n
                bar.update(task, advance=n)
                if on_progress:
                    on_progress(done[0], total)

            outcomes = run(tick)
    else:
        def tick(n):
            done[0] += n
            if on_progress:
                on_progress(done[0], total)

        outcomes = run(tick)
    order = {r.token: i for i, r in enumerate(refs)}
    outcomes.sort(key=lambda o: order.get(o.token, 0))
    summary = CacheSummary(spec.name, str(out), outcomes, list(listing.problems), workers=workers)
    available = {o.token: o for o in outcomes if o.status in ("cached", "skipped")}
    _write_metadata(out, [o for o in outcomes if o.token in available])
    if spec.is_two_stage:
        summary.groups = write_groups(out, spec, available)
    summary.seconds = time.perf_counter() - t0
    tmp = out / ".cache_summary.json.tmp"
    tmp.write_text(json.dumps(summary.to_dict(), indent=2))
    os.replace(tmp, out / "cache_summary.json")
    if not available:
        reasons = "; ".join(f"{o.token}: {o.reason}" for o in outcomes[:5]) or "the split selected no scene"
        raise NothingCachedError(f"split {spec.name!r} cached zero tokens ({reasons})")
    return summary


def _write_metadata(out: Path, outcomes: list[TokenOutcome]) -> None:
    tmp = out / ".metadata.csv.tmp"
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["token", "log_name", "scene_type", "path"])
        for o in outcomes:
            writer.writerow([o.token, o.log_name, o.kind, os.path.relpath(o.path, out)])
    os.replace(tmp, out / "metadata.csv")


def write_groups(out: Path, spec: SplitSpec, available: dict[str, TokenOutcome]) -> int:
    """One ``navsim-scene-group/v1`` per mapping whose every token is cached (incomplete ones are left out)."""
    from irlvla_bench.io.scoring_case import GROUP_SCHEMA, parse_group, read_json

    count = 0
    for now, prev, pairs in spec.mappings:
        needed = [now, prev] + [t for pair in pairs for t in pair]
        if not all(t in available for t in needed):
            continue
        path = out / "groups" / f"{now}{CASE_SUFFIX}"
        if path.exists() and all(available[t].status == "skipped" for t in needed):
            count += 1  # written by an earlier run from these very case files (atomic: exists => complete)
            continue
        frames = [read_json(available[t].path) for t in dict.fromkeys(needed)]
        group = {"schema": GROUP_SCHEMA, "group_id": f"{spec.name}_{now}",
                 "mappings": [{"now": now, "prev": prev, "second_stage": [list(p) for p in pairs]}],
                 "frames": frames}
        parse_group(group, source=str(path))
        _write_json_gz(path, group)
        count += 1
    return count


def load_cached_cases(out_dir: str | Path):
    """All cached cases listed in ``metadata.csv`` as ``ScoringCase`` objects, in listing order."""
    from irlvla_bench.io.scoring_case import load_case

    out = Path(out_dir)
    meta = out / "metadata.csv"
    if not meta.exists():
        raise InputError(str(meta), "<file>", "not a cache directory (metadata.csv missing)")
    with open(meta, newline="") as handle:
        return [load_case(out / row["path"]) for row in csv.DictReader(handle)]


def load_cached_groups(out_dir: str | Path):
    from irlvla_bench.io.scoring_case import load_group

    return [load_group(p) for p in sorted((Path(out_dir) / "groups").glob(f"*{CASE_SUFFIX}"))]


__all__ = ["CacheSummary", "NothingCachedError", "TokenOutcome", "cache_one", "cache_split", "case_path",
           "load_cached_cases", "load_cached_groups", "write_groups"]
