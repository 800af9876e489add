"""The pipeline's stage bookkeeping (skip finished stages, rerun changed or broken ones) and a small real run."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from irlvla_bench.pipeline import PipelineConfig, pipeline_preset
from irlvla_bench.pipeline.config import ILStage, LabelStage, RLStage, RWMStage, WorldStage
from irlvla_bench.pipeline.run import Stage, run_pipeline, settings_of


def _counting_stages(calls: list[str], fail_in: set[str] | None = None):
    def body_for(name: str):
        def body(ctx, directory):
            calls.append(name)
            if fail_in and name in fail_in:
                raise RuntimeError(f"{name} interrupted")
            path = directory / "out.txt"
            path.write_text(name)
            return [ctx.rel(path)], {"path": ctx.rel(path)}
        return body

    return [
        Stage("a", "a", settings_of("world"), (), body_for("a")),
        Stage("b", "b", settings_of("traffic"), ("a",), body_for("b")),
        Stage("c", "c", settings_of("eval_split"), ("b",), body_for("c")),
    ]


def test_finished_stages_are_skipped(tmp_path):
    calls: list[str] = []
    config = PipelineConfig()
    run_pipeline(tmp_path, config, stages=_counting_stages(calls), log=lambda _: None)
    results = run_pipeline(tmp_path, config, stages=_counting_stages(calls), log=lambda _: None)
    assert calls == ["a", "b", "c"]
    assert all(r.skipped for r in results.values())


def test_changed_setting_reruns_the_stage_and_everything_downstream(tmp_path):
    calls: list[str] = []
    run_pipeline(tmp_path, PipelineConfig(), stages=_counting_stages(calls), log=lambda _: None)
    calls.clear()
    run_pipeline(tmp_path, PipelineConfig(traffic="idm"), stages=_counting_stages(calls), log=lambda _: None)
    assert calls == ["b", "c"]


def test_missing_output_or_torn_marker_reruns(tmp_path):
    calls: list[str] = []
    run_pipeline(tmp_path, PipelineConfig(), stages=_counting_stages(calls), log=lambda _: None)
    calls.clear()
    (tmp_path / "b" / "out.txt").unlink()
    (tmp_path / "c" / ".stage.json").write_text("{ torn")
    run_pipeline(tmp_path, PipelineConfig(), stages=_counting_stages(calls), log=lambda _: None)
    assert calls == ["b", "c"]  # b: its output is gone; c: same inputs, but its marker is unreadable


def test_interrupted_stage_resumes_there(tmp_path):
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="b interrupted"):
        run_pipeline(tmp_path, PipelineConfig(), stages=_counting_stages(calls, {"b"}), log=lambda _: None)
    assert not (tmp_path / "b" / ".stage.json").exists()
    calls.clear()
    run_pipeline(tmp_path, PipelineConfig(), stages=_counting_stages(calls), log=lambda _: None)
    assert calls == ["b", "c"]


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown pipeline preset"):
        pipeline_preset("huge")


@pytest.mark.slow
def test_whole_pipeline_on_a_tiny_world(tmp_path):
    """Every stage, end to end, with budgets cut to seconds: the wiring, not the numbers, is under test."""
    config = replace(
        PipelineConfig(), world=WorldStage(preset="tiny", test_logs=2, train_logs=2, mappings_per_log=1),
        il=ILStage(time_budget_s=20, epochs=1), labels=LabelStage(vocabulary=32, perturbations=8),
        rwm=RWMStage(preset="tiny", steps=20), rl=RLStage(iterations=1, scenes_per_iteration=4), bootstrap=200)
    results = run_pipeline(tmp_path, config, log=lambda _: None)
    board = results["leaderboard"].details
    assert board["entries"] == len(config.baselines) + 2
    for agent in ("pdm_closed", "irlvla_il", "irlvla_rl"):
        summary = json.loads((tmp_path / "eval" / agent / "summary.json").read_text())
        assert summary["aggregation"] == "two_stage" and summary["num_failed"] == 0
    index = (tmp_path / "index.html").read_text()
    for page in ("reports/leaderboard/leaderboard.html", "reports/fidelity/fidelity.html",
                 "reports/compare_il_rl/index.html"):
        assert page in index
    figures = sorted((tmp_path / "reports").rglob("*.png"))
    assert figures and all(f.relative_to(tmp_path).as_posix() in index for f in figures)
    again = run_pipeline(tmp_path, config, log=lambda _: None)
    assert all(r.skipped for r in again.values())
