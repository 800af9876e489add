"""``<out>/progress/``: one JSON file per token, written atomically the moment it is produced, so an interrupted
run loses at most the token in flight. ``run.json`` names the run the records belong to; records of a different
run (other agent, checkpoint, split, traffic, seed or scorer) are never mixed in."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from irlvla_bench.evaluation.records import TokenRecord
from irlvla_bench.io.atomic import write_json_atomic

RUN_FILE = "run.json"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


class ProgressMismatchError(RuntimeError):
    """``progress/`` holds the partial results of a different run."""


@dataclass(frozen=True)
class ProgressStore:
    directory: str  # a plain path, so that Ray workers can be handed the store

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def _file(self, token: str) -> Path:
        # Tokens are hex in NAVSIM; anything else gets a hashed name rather than a path built from data.
        safe = _SAFE_NAME.match(token) and f"{token}.json" != RUN_FILE
        name = token if safe else hashlib.sha256(token.encode()).hexdigest()
        return self.path / f"{name}.json"

    def open(self, run: dict) -> None:
        """Start or resume: refuse progress left by a different run, else (re)write ``run.json``."""
        marker = self.path / RUN_FILE
        if marker.exists():
            previous = json.loads(marker.read_text())
            if previous != run and self._token_files():
                changed = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
                raise ProgressMismatchError(
                    f"{self.path} holds partial results of a different run (differs in {', '.join(changed)}); "
                    "use another --out folder or delete that progress folder to start over")
        elif self._token_files():
            raise ProgressMismatchError(f"{self.path} holds token results but no {RUN_FILE}: their run is unknown; "
                                        "delete that progress folder to start over")
        write_json_atomic(marker, run, indent=2)

    def _token_files(self) -> list[Path]:
        return sorted(p for p in self.path.glob("*.json") if p.name != RUN_FILE)

    def load(self) -> dict[str, TokenRecord]:
        records = {}
        for path in self._token_files():
            record = TokenRecord.from_json(json.loads(path.read_text()))
            records[record.token] = record
        return records

    def write(self, record: TokenRecord) -> None:
        write_json_atomic(self._file(record.token), record.to_json())

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
