"""Training: schedule, logs and checkpoints, exact resume after a kill, DDP under torchrun (gloo), the CLI, and the
registered ``irlvla_il`` agent (contract checker included)."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_vla_fixtures import sample_cache, tiny_config, trained_run, vla_world

from agents.vla.train import lr_factor, read_checkpoint, train

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _losses(rows: list[dict]) -> list[tuple[int, str]]:
    return [(int(r["step"]), r["loss"]) for r in rows]  # the CSV's text: equal text is equal float


def test_warmup_cosine_schedule():
    assert lr_factor(0, 100, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(100, 100, 10, 0.1) == pytest.approx(0.1)
    values = [lr_factor(s, 100, 10, 0.1) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_a_short_run_writes_log_checkpoints_and_summary():
    out = trained_run()
    rows = _rows(out / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, len(rows) + 1)) and rows
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    payload = read_checkpoint(out / "checkpoint.pt", full=True)
    assert payload["state"]["step"] == len(rows) and payload["state"]["finished"]
    assert {"optimizer", "scheduler", "rng", "model", "config"} <= set(payload)
    final = read_checkpoint(out / "model.pt")
    assert "optimizer" not in final and final["config"]["name"] == "test"
    assert not list(out.glob(".*.tmp"))
    # Anchors were fitted on the training trajectories and travel in the state dict.
    anchors = final["model"]["planner.anchors"]
    assert anchors.shape == (4, 8, 3) and float(anchors.abs().sum()) > 0


_KILL_SCRIPT = """
import sys
from dataclasses import replace
sys.path[:0] = [{tests!r}, {root!r}]  # the project itself, installed or not
from test_vla_fixtures import tiny_config
from agents.vla.train import train
cfg = tiny_config()
train({world!r}, "navtrain", cfg, {out!r}, cache_dir={cache!r}, save_every=1, progress=False)
"""


def test_killed_training_resumes_with_the_same_losses(tmp_path):
    cfg = tiny_config()
    reference = train(vla_world(), "navtrain", cfg, tmp_path / "reference", cache_dir=sample_cache(),
                      progress=False, log=lambda m: None)
    ref_rows = _rows(tmp_path / "reference" / "train_log.csv")
    assert len(ref_rows) == reference.steps >= 6

    out = tmp_path / "killed"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT.format(tests=str(TESTS), root=str(ROOT), world=str(vla_world()), out=str(out),
                                          cache=str(sample_cache())))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            log = out / "train_log.csv"
            if log.exists() and len(_rows(log)) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the training finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    killed_at = read_checkpoint(out / "checkpoint.pt", full=True)["state"]["step"]
    assert 1 <= killed_at < reference.steps
    resumed = train(vla_world(), "navtrain", cfg, out, cache_dir=sample_cache(), progress=False, log=lambda m: None)
    assert resumed.steps == reference.steps
    assert [int(r["step"]) for r in resumed.losses] == list(range(killed_at + 1, reference.steps + 1))
    assert _losses(_rows(out / "train_log.csv")) == _losses(ref_rows)
    # The final weights are the uninterrupted run's, bit for bit.
    a = read_checkpoint(tmp_path / "reference" / "model.pt")["model"]
    b = read_checkpoint(out / "model.pt")["model"]
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_stopping_at_max_steps_then_resuming_equals_one_run(tmp_path):
    cfg = replace(tiny_config(), train=replace(tiny_config().train, epochs=1))
    full = train(vla_world(), "navtrain", cfg, tmp_path / "a", cache_dir=sample_cache(), progress=False,
                 log=lambda m: None)
    part = train(vla_world(), "navtrain", cfg, tmp_path / "b", cache_dir=sample_cache(), progress=False,
                 max_steps=2, log=lambda m: None)
    assert part.steps == 2 and not part.finished and not (tmp_path / "b" / "model.pt").exists()
    rest = train(vla_world(), "navtrain", cfg, tmp_path / "b", cache_dir=sample_cache(), progress=False,
                 log=lambda m: None)
    assert rest.finished and [r["loss"] for r in part.losses + rest.losses] == [r["loss"] for r in full.losses]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DDP_SCRIPT = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]  # the project itself, installed or not
from test_vla_fixtures import tiny_config
from agents.vla.train import train
train({world!r}, "navtrain", tiny_config(), {out!r}, cache_dir={cache!r}, progress=False, max_steps=3)
"""


def test_two_process_torchrun_on_cpu(tmp_path):  # ~15 s: two interpreters importing torch
    out = tmp_path / "ddp"
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(TESTS), root=str(ROOT), world=str(vla_world()), out=str(out),
                                         cache=str(sample_cache())))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(script)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = read_checkpoint(out / "checkpoint.pt", full=True)
    assert payload["state"]["step"] == 3 and payload["meta"]["world_size"] == 2
    rows = _rows(out / "train_log.csv")  # rank 0 alone logs
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and all(np.isfinite(float(r["loss"])) for r in rows)


def test_cli_trains_the_small_config(tmp_path):
    from typer.testing import CliRunner

    from irlvla_bench.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "il", "--data", str(vla_world()), "--out", str(out), "--config",
                                      "small", "--max-steps", "1", "--batch-size", "4", "--threads", "1",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(out / "checkpoint.pt", full=True)["state"]["step"] == 1
    assert read_checkpoint(out / "checkpoint.pt")["config"]["name"] == "small"
    bad = CliRunner().invoke(app, ["train", "il", "--data", str(vla_world()), "--out", str(out), "--config", "huge"])
    assert bad.exit_code != 0 and "huge" in bad.output


# ----------------------------------------------------------------------------------------------------------------
# The agent


def _inputs():
    from agents.contract import contract_inputs

    return contract_inputs(vla_world(), "navhard_two_stage", max_scenes=3)


def test_registered_agent_plans_deterministically():
    from agents.base import available_agents, make_agent

    assert "irlvla_il" in available_agents()
    agent = make_agent(f"irlvla_il:{trained_run() / 'model.pt'}")
    assert agent.name == "irlvla_il"
    sensors = agent.sensor_config()
    assert sensors.cameras == tiny_config().image.cameras and sensors.history_frames == 4
    from agents.base import restrict_input

    views = [restrict_input(x, sensors) for x in _inputs()]
    agent.seed(3)
    first = [t.poses for t in agent.compute_trajectories(views)]
    agent.seed(3)
    single = [agent.compute_trajectory(v).poses for v in views]
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(first, single))
    assert all(p.shape == (8, 3) and np.isfinite(p).all() for p in first)
    assert [c.source for c in agent.last_commands] == ["head"]


def test_agent_needs_a_checkpoint():
    from agents.base import CheckpointRequiredError, make_agent

    with pytest.raises(CheckpointRequiredError):
        make_agent("irlvla_il")


def test_contract_checker_passes_on_irlvla_il():
    from agents.base import make_agent
    from agents.contract import check_agent

    spec = f"irlvla_il:{trained_run() / 'model.pt'}"
    report = check_agent(lambda: make_agent(spec), _inputs())
    assert report.passed, str(report)


def test_agent_with_the_language_backend_falls_back_to_the_head(tmp_path):
    pytest.importorskip("transformers")
    from test_vla_commands import _tiny_language_model

    from agents.base import make_agent, restrict_input

    folder = _tiny_language_model(tmp_path / "lm")
    agent = make_agent(f"irlvla_il:{trained_run() / 'model.pt'}", command_backend="language",
                       language_model=str(folder))
    head = make_agent(f"irlvla_il:{trained_run() / 'model.pt'}")
    views = [restrict_input(x, agent.sensor_config()) for x in _inputs()[:2]]
    out = agent.compute_trajectories(views)
    assert len(out) == 2 and {c.source for c in agent.last_commands} <= {"language", "fallback"}
    if all(c.source == "fallback" for c in agent.last_commands):  # a random LM: the head's commands, same plan
        assert all(np.allclose(a.poses, b.poses, atol=1e-4) for a, b in zip(out, head.compute_trajectories(views)))
