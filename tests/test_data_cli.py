"""``irlvla-bench data generate`` / ``data cache`` through the typer app."""

from __future__ import annotations

import json
import warnings

from typer.testing import CliRunner

from irlvla_bench.data_cli import app

runner = CliRunner()


def test_generate_then_cache_navtest(tmp_path):
    root = tmp_path / "world"
    result = runner.invoke(app, ["generate", "--out", str(root), "--logs", "1", "--seed", "4", "--preset", "tiny",
                                 "--no-lidar", "--train-logs", "1"])
    assert result.exit_code == 0, result.output
    assert (root / "navsim_logs" / "test").is_dir() and list((root / "sensor_blobs" / "test").rglob("*.jpg"))
    assert not list((root / "sensor_blobs" / "test").rglob("*.pcd"))
    from irlvla_bench.io.splits import list_scenes, load_split

    train = load_split("navtrain", root)
    assert train.data_split == "trainval" and list_scenes(root, train).scenes
    again = runner.invoke(app, ["generate", "--out", str(root), "--logs", "1", "--seed", "4", "--preset", "tiny"])
    assert again.exit_code == 2 and "not empty" in again.output

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = runner.invoke(app, ["cache", "--data", str(root), "--split", "navtest", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "c" / "cache_summary.json").read_text())
    assert summary["cached"] > 0 and summary["failed"] == 0
    assert f"│{summary['cached']:>8} │" in result.output or str(summary["cached"]) in result.output

    resumed = runner.invoke(app, ["cache", "--data", str(root), "--split", "navtest", "--out", str(tmp_path / "c")])
    assert resumed.exit_code == 0 and "already cached" in resumed.output


def test_cache_reports_input_errors_with_exit_codes(tmp_path):
    from test_data_fixtures import tiny_world

    root, _ = tiny_world()
    unknown = runner.invoke(app, ["cache", "--data", str(root), "--split", "nope", "--out", str(tmp_path / "c")])
    assert unknown.exit_code == 2 and "unknown split 'nope'" in unknown.output
    token = runner.invoke(app, ["cache", "--data", str(root), "--split", "navtest", "--out", str(tmp_path / "c"),
                                "--token", "ffffffffffffffff"])
    assert token.exit_code == 2 and "not in split 'navtest'" in token.output
    bad_preset = runner.invoke(app, ["generate", "--out", str(tmp_path / "w"), "--preset", "huge"])
    assert bad_preset.exit_code != 0 and "unknown world preset" in bad_preset.output
