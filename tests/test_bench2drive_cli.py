"""The ``b2d score`` command: README tables on stdout, every number in JSON, clean exits on bad input."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluators.bench2drive.cli import app

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden" / "bench2drive"
runner = CliRunner()


def _smallest_sets(n: int = 2) -> list[Path]:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden data not found at {GOLDEN} (needs the shared/ folder next to the project)")
    sets = sorted(GOLDEN.glob("*.tar.gz"), key=lambda p: p.stat().st_size)
    if not sets:
        pytest.skip(f"no result sets under {GOLDEN}")
    return sets[:n]


def _extract(tarball: Path, dest: Path) -> Path:
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="data")
    return next(p for p in dest.iterdir() if p.is_dir())


def _invoke(root: Path, out: Path, *extra: str):
    inputs = root / "inputs"
    return runner.invoke(app, ["score", str(inputs / "eval_json"), "--routes", str(inputs / "routes.xml"),
                               "--junctions", str(inputs / "junction_table.json"),
                               "--metric-dir", str(inputs / "metric"), "--out", str(out), *extra])


def test_score_command_prints_tables_and_writes_every_number(tmp_path):
    for tarball in _smallest_sets():
        root = _extract(tarball, tmp_path / tarball.name)
        out = tmp_path / f"{tarball.name}.json"
        summary = json.loads((root / "outputs" / "summary.json").read_text())
        order = ",".join(summary["merge_glob_order"])
        result = _invoke(root, out, "--file-order", order, "--strict", "--official-out", str(tmp_path / "off"))
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Driving Score" in result.output and "Traffic_Signs" in result.output.replace("\n", "")
        data = json.loads(out.read_text())
        merged = json.loads((root / "outputs" / "merged.json").read_text())
        assert data["driving_score"] == merged["driving score"]
        assert data["success_rate"] == merged["success rate"]
        assert data["readme"]["success_rate"] == 100 * merged["success rate"]
        assert len(data["routes"]) == merged["eval num"]
        assert data["inputs"]["file_order"] == summary["merge_glob_order"]
        assert "findings" in data
        ability = root / "outputs" / "merged_ability.json"
        if ability.exists():
            assert result.exit_code == 0 or data["errors"], result.output
            gold = json.loads(ability.read_text())
            assert {k: data["abilities"][k] for k in gold if k != "crashed"} == \
                {k: v for k, v in gold.items() if k != "crashed"}
            assert json.loads((tmp_path / "off" / "merged_ability.json").read_text()) == gold
        else:
            assert result.exit_code == 1
            assert data["complete"] is False and data["errors"]
            assert "undefined" in result.output


def test_bad_input_exits_2_with_a_message_not_a_traceback(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "task.json").write_text("{oops")
    routes = tmp_path / "routes.xml"
    routes.write_text('<routes><route id="1" town="T"><scenarios><scenario type="Accident"/></scenarios>'
                      "</route></routes>")
    result = runner.invoke(app, ["score", str(folder), "--routes", str(routes)])
    assert result.exit_code == 2
    assert "task.json" in result.output and "malformed JSON" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["score", str(tmp_path / "nowhere"), "--routes", str(routes)])
    assert result.exit_code == 2 and "not found" in result.output


def test_score_requires_routes():
    result = runner.invoke(app, ["score", "x"])
    assert result.exit_code != 0
    assert "--routes" in result.output
