"""Shared fixtures: the golden reference folder (skipped with a clear message when absent)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
GOLDEN = PROJECT_ROOT.parent / "shared" / "golden"
GOLDEN_EPDMS = GOLDEN / "epdms"


def load_json(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def golden_inputs(kind: str) -> list[Path]:
    folder = GOLDEN_EPDMS / kind
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json.gz") if ".result" not in p.name and not p.name.startswith("dataset"))


def require_golden() -> None:
    if not GOLDEN_EPDMS.is_dir():
        pytest.skip(f"golden reference data not found at {GOLDEN_EPDMS} (expected ../shared/golden beside the project)")


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test, restored after (training tests are deterministic and cheaper so on the
    2-core machines; ``pytestmark = pytest.mark.usefixtures("one_torch_thread")`` applies it to a module)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
