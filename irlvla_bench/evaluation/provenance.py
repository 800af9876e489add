"""What a summary records about where its numbers came from: code version, package versions, checkpoint
content, and a hash of the configuration that determines the numbers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VERSIONED_PACKAGES = {"numpy": "numpy", "numba": "numba", "pandas": "pandas", "irlvla_bench": "irlvla-bench",
                      "torch": "torch", "ray": "ray"}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_sha256(path: str | None) -> str | None:
    """sha256 of a checkpoint file; for a checkpoint folder, of its files' relative paths and contents in order.
    None when there is no checkpoint or it is not on this machine (the factory then decides what that means)."""
    if not path:
        return None
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if p.is_dir():
        digest = hashlib.sha256()
        for f in sorted(x for x in p.rglob("*") if x.is_file()):
            digest.update(str(f.relative_to(p)).encode() + b"\0" + sha256_file(f).encode())
        return digest.hexdigest()
    return None


def _git(*args: str) -> str | None:
    try:
        # --no-optional-locks: `status` must not take index.lock while someone else may be committing.
        done = subprocess.run(["git", "--no-optional-locks", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                              text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> tuple[str | None, bool | None]:
    """(commit, dirty) of the repository this package runs from; (None, None) when it is not a checkout (an
    installed wheel inside some other repository must not report that repository's commit)."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != PROJECT_ROOT:
        return None, None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return commit, (None if status is None else bool(status))


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in VERSIONED_PACKAGES.items():
        try:
            versions[key] = metadata.version(dist)  # never imports the package (torch stays unloaded)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def canonical_json(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_hash(config: dict) -> str:
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def evaluation_config(*, split: str, traffic: str, agent: dict, seed: int) -> dict:
    """Everything that determines the numbers: split, traffic, agent identity (name and checkpoint *content*, so
    a moved checkpoint hashes the same), seed, scorer version and every scorer threshold."""
    from evaluators.epdms import NAVSIM_V2, SCORER_VERSION

    return {"split": split, "traffic": traffic, "agent": agent, "seed": seed, "scorer_version": SCORER_VERSION,
            "scorer_config": dataclasses.asdict(NAVSIM_V2)}
