"""Reward world model: shapes, EPDMS assembly against the evaluator, training, resume, encoders, CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_data_fixtures import cached_split, tiny_world
from test_labelling import CONFIG, vocabulary

torch = pytest.importorskip("torch")

from agents.rwm.assemble import FILTERED, assemble  # noqa: E402
from agents.rwm.config import RWMConfig, preset  # noqa: E402
from agents.rwm.data import load_inputs, load_store, make_batch, to_torch  # noqa: E402
from agents.rwm.train import CHECKPOINT_LAST, LOG_FILE, build_model, load_checkpoint, train_rwm  # noqa: E402
from evaluators.epdms.score import SUB_METRICS  # noqa: E402
from irlvla_bench.labelling import label_split, load_labels, poses_of  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
TINY = preset("tiny")


@lru_cache(maxsize=None)
def labels() -> Path:
    """navhard_two_stage of the tiny world (original and synthetic frames), labelled with its data root."""
    root, _ = tiny_world()
    out = Path(tempfile.mkdtemp(prefix="irlvla_rwm_labels_")) / "navhard"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        label_split(cached_split("navhard_two_stage")[0], out, vocabulary(), CONFIG,
                    meta={"data_root": str(root), "split": "navhard_two_stage"})
    return out


@lru_cache(maxsize=None)
def trained() -> Path:
    out = Path(tempfile.mkdtemp(prefix="irlvla_rwm_run_"))
    torch.manual_seed(0)
    train_rwm(TINY, [labels()], out, log=lambda _: None)
    return out


def test_forward_shapes_and_prediction_columns():
    store = load_store([labels()])
    inputs = load_inputs(store, TINY.encoder)
    model = build_model(TINY, inputs[0].bev.shape[0])
    batch = to_torch(make_batch(store, inputs, np.array([0, 1]), 7, np.random.default_rng(0)))
    heads = model(model.encode(batch["bev"], batch["ego"]), batch["poses"], batch["states"], batch["previous"],
                  batch["previous_states"], batch["has_previous"])
    assert heads["no_at_fault_collisions"].shape == (2, 7, 3) and heads["driving_direction_compliance"].shape == (2, 7, 3)
    for name in ("drivable_area_compliance", "traffic_light_compliance", "time_to_collision_within_bound",
                 "lane_keeping", "history_comfort", "extended_comfort", "progress"):
        assert heads[name].shape == (2, 7), name
    assert (heads["progress"] >= 0).all()

    from agents.rwm.predict import RewardModel

    rwm = RewardModel.load(trained() / "rwm.pt")
    table = load_labels(labels())
    rows = table[table["token"] == table["token"].iloc[0]]
    pred = rwm.predict(load_inputs(load_store([labels()]), TINY.encoder)[0], poses_of(rows))
    assert len(pred) == len(rows)
    for column in SUB_METRICS + ("extended_comfort", "epdms", "multiplicative", "progress_m"):
        assert column in pred
    probabilities = pred.drop(columns=["progress_m"]).to_numpy()
    assert np.isfinite(probabilities).all() and probabilities.min() >= 0 and probabilities.max() <= 1 + 1e-6
    # The same prediction from the case (the raster rendered on the fly) and in a chunked batch.
    from irlvla_bench.io.scoring_case import load_case

    again = RewardModel.load(trained() / "rwm.pt", chunk=5).predict(load_case(rows["case_file"].iloc[0]),
                                                                     poses_of(rows))
    assert np.allclose(again["epdms"], pred["epdms"], atol=1e-3)


def _one_hot_heads(frame: pd.DataFrame) -> dict:
    """Head outputs that put all probability on the exact labels (what a perfect RWM would output)."""
    big = 60.0

    def three(values):
        classes = np.round(values * 2).astype(int)
        logits = np.full((len(values), 3), -big)
        logits[np.arange(len(values)), classes] = big
        return torch.tensor(logits[None])

    heads = {m: three(frame["raw_" + m].to_numpy()) for m in ("no_at_fault_collisions", "driving_direction_compliance")}
    for m in ("drivable_area_compliance", "traffic_light_compliance", "time_to_collision_within_bound",
              "lane_keeping", "history_comfort"):
        heads[m] = torch.tensor(np.where(frame["raw_" + m].to_numpy() >= 1.0, big, -big)[None])
    heads["extended_comfort"] = torch.tensor(np.where(frame["extended_comfort"].to_numpy() >= 1.0, big, -big)[None])
    return heads


def test_assembly_equals_the_evaluators_formula_on_exact_inputs():
    from agents.rwm.assemble import expectations

    table = load_labels(labels())
    assert set(table["scene_type"]) == {"original", "synthetic"}
    checked = 0
    for token, frame in table.groupby("token"):
        values, _ = expectations(_one_hot_heads(frame))
        first = frame.iloc[0]
        has_human = not np.isnan(first["human_no_at_fault_collisions"])
        human_zero = {m: torch.tensor([float(first["human_" + m] == 0.0) if has_human else 0.0],
                                      dtype=torch.float64) for m in FILTERED}
        out = assemble(values, torch.tensor(frame["progress_m"].to_numpy()[None]),
                       torch.tensor([first["reference_progress_m"]]), torch.tensor([first["reference_multiplicative"]]),
                       human_zero, torch.tensor([has_human]))
        for m in SUB_METRICS:
            assert np.allclose(out[m][0].numpy(), frame[m].to_numpy(), atol=1e-9), (token, m)
        assert np.allclose(out["epdms"][0].numpy(), frame["epdms"].to_numpy(), atol=1e-9), token
        checked += 1
    assert checked == table["token"].nunique()


def test_training_loss_decreases():
    log = pd.read_csv(trained() / LOG_FILE)
    assert list(log["step"]) == list(range(5, TINY.train.steps + 1, 5))
    assert log["total"].iloc[-2:].mean() < 0.9 * log["total"].iloc[:2].mean()
    assert (trained() / "rwm.pt").exists() and (trained() / "train_summary.json").exists()


def test_resume_after_a_kill_gives_the_same_weights(tmp_path):
    cfg = replace(TINY, train=replace(TINY.train, steps=20, checkpoint_every=10, log_every=5))
    straight = tmp_path / "straight"
    train_rwm(cfg, [labels()], straight, log=lambda _: None)

    run = tmp_path / "killed"
    train_rwm(cfg, [labels()], run, steps=10, log=lambda _: None)
    at_ten = tmp_path / "at_ten.pt"
    shutil.copy(run / CHECKPOINT_LAST, at_ten)
    train_rwm(cfg, [labels()], run, steps=15, resume=True, log=lambda _: None)
    # A kill after step 15 was logged but before it was checkpointed: the last checkpoint is step 10's.
    shutil.copy(at_ten, run / CHECKPOINT_LAST)
    train_rwm(cfg, [labels()], run, resume=True, log=lambda _: None)

    a, b = load_checkpoint(straight / "rwm.pt")["model"], load_checkpoint(run / "rwm.pt")["model"]
    for name in a:
        assert torch.equal(a[name], b[name]), name
    log = pd.read_csv(run / LOG_FILE)
    assert list(log["step"]) == [5, 10, 15, 20]
    straight_log = pd.read_csv(straight / LOG_FILE)
    assert np.allclose(log["total"], straight_log["total"])
    with pytest.raises(ValueError, match="different config"):
        train_rwm(replace(cfg, loss=replace(cfg.loss, preference=1.0)), [labels()], run, resume=True)


def test_config_round_trip():
    for cfg in (RWMConfig(), TINY):
        assert RWMConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        RWMConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError):
        replace(RWMConfig(), encoder=replace(RWMConfig().encoder, kind="lidar"))


def test_sensors_encoder_lifts_cameras_and_trains():
    cfg = replace(TINY, encoder=replace(TINY.encoder, kind="sensors"))
    store = load_store([labels()])
    inputs = load_inputs(store, cfg.encoder)
    bev = inputs[0].bev
    assert bev.shape[0] == 4 and bev[3].mean() > 0.3  # RGB + seen mask; the cameras cover much of the grid
    assert np.abs(inputs[0].ego[-4:]).sum() == 1.0  # the driving command is one-hot
    model = build_model(cfg, 4)
    batch = to_torch(make_batch(store, inputs, np.array([0]), 5, np.random.default_rng(0)))
    heads = model(model.encode(batch["bev"], batch["ego"]), batch["poses"], batch["states"], batch["previous"],
                  batch["previous_states"], batch["has_previous"])
    assert heads["lane_keeping"].shape == (1, 5)


def test_il_encoder_reads_the_policy_features():
    from agents.rwm.il_adapter import il_available

    if not il_available():
        pytest.skip("agents.vla (the IL policy) is not in this checkout")
    cfg = replace(TINY, encoder=replace(TINY.encoder, kind="il"))
    store = load_store([labels()], tokens={load_labels(labels())["token"].iloc[0]})
    inputs = load_inputs(store, cfg.encoder, cache_root=tempfile.mkdtemp(prefix="irlvla_il_"))
    from agents.rwm.il_adapter import il_grid

    grid = il_grid("")
    assert inputs[0].bev.shape[1:] == grid.shape()
    cfg = replace(cfg, encoder=replace(cfg.encoder, il=replace(cfg.encoder.il, grid=grid)))
    model = build_model(cfg, inputs[0].bev.shape[0])
    batch = to_torch(make_batch(store, inputs, np.array([0]), 4, np.random.default_rng(0)))
    heads = model(model.encode(batch["bev"], batch["ego"]), batch["poses"], batch["states"], batch["previous"],
                  batch["previous_states"], batch["has_previous"])
    assert torch.isfinite(heads["epdms" if "epdms" in heads else "progress"]).all()


def test_cli_commands_register_without_importing_torch():
    code = ("import sys, typer\n"
            "from agents.rwm.cli import register\n"
            "from reports.fidelity_cli import register as r2\n"
            "from irlvla_bench.label_cli import register as r3\n"
            "app = typer.Typer(); register(app); r2(app); r3(app)\n"
            "print('torch' in sys.modules, sorted(c.name for c in app.registered_commands))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False ['fidelity', 'label', 'rwm']"


def test_fidelity_report_files_and_numbers(tmp_path):
    import json

    from reports.fidelity_report import build_fidelity_report

    result = build_fidelity_report(trained() / "rwm.pt", [labels()], tmp_path, throughput_scenes=1)
    names = {p.name for p in result.files}
    assert {"fidelity.json", "fidelity.md", "fidelity.html", "reliability.png", "epdms_scatter.png",
            "top1_regret.png"} <= names
    numbers = json.loads((tmp_path / "fidelity.json").read_text())
    assert set(numbers["by"]["scene_type"]) == {"original", "synthetic"}
    assert numbers["throughput"]["exact_traj_per_s"] > 0 and numbers["throughput"]["rwm_traj_per_s"] > 0
    assert "top1_regret_points" in numbers["checks"] and numbers["overall"]["rows"] == len(load_labels(labels()))
    assert "EPDMS Spearman" in (tmp_path / "fidelity.md").read_text()


@pytest.mark.slow
def test_ddp_two_processes_with_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys\nfrom dataclasses import replace\nfrom agents.rwm.config import preset\n"
        "from agents.rwm.train import train_rwm\n"
        "cfg = preset('tiny'); cfg = replace(cfg, train=replace(cfg.train, steps=4, threads=1))\n"
        "size = train_rwm(cfg, [sys.argv[1]], sys.argv[2], log=lambda _: None)['world_size']\n"
        # Rank 0 alone reports: two ranks writing to one pipe can interleave their lines ("22").
        "import os\nif os.environ.get('RANK', '0') == '0':\n    print(size, flush=True)\n")
    labels()  # featurized once here, so the ranks only read the cache
    load_inputs(load_store([labels()]), TINY.encoder)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(labels()), str(tmp_path / "run")], cwd=PROJECT, capture_output=True,
                         text=True, timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(PROJECT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["2"] and (tmp_path / "run" / "rwm.pt").exists()


def test_batched_prediction_matches_per_scene_prediction():
    from agents.rwm.predict import RewardModel

    rwm = RewardModel.load(trained() / "rwm.pt")
    store = load_store([labels()])
    inputs = load_inputs(store, TINY.encoder)
    picks = [int(np.flatnonzero(np.array(store.scene_type) == kind)[0]) for kind in ("original", "synthetic")]
    poses = np.stack([store.poses[store.rows(i)[:6]] for i in picks])
    batch = rwm.predict_batch([inputs[i] for i in picks], poses)
    assert batch["epdms"].shape == (2, 6)
    for j, i in enumerate(picks):
        single = rwm.predict(inputs[i], poses[j], as_frame=False)
        for name in ("epdms", "drivable_area_compliance", "ego_progress"):
            assert np.allclose(batch[name][j], single[name], atol=1e-5), name


def test_lane_following_forecast_starts_at_the_box_and_keeps_the_speed():
    from agents.rwm.motion import forecast
    from irlvla_bench.io.scoring_case import load_case
    from irlvla_bench.labelling.label import list_cache
    from irlvla_bench.types import ObjectType

    checked = 0
    for entry in list_cache(cached_split("navtest")[0]):
        case = load_case(entry.path)
        tracks = case.tracked_objects
        present = tracks.present[0]
        boxes, velocities, types = tracks.boxes[0, present], tracks.velocities[0, present], tracks.types[present]
        moving = (np.hypot(*velocities.T) > 1.0) & (types == int(ObjectType.VEHICLE))
        if not moving.any():
            continue
        times = (0.0, 1.0, 2.0)
        lane = forecast(case, boxes[moving], velocities[moving], types[moving], times, "lane_following")
        cv = forecast(case, boxes[moving], velocities[moving], types[moving], times, "constant_velocity")
        assert np.allclose(cv[0], boxes[moving]) and np.allclose(cv[2, :, :2] - cv[0, :, :2], 2 * velocities[moving])
        assert np.abs(lane[0, :, :2] - boxes[moving, :2]).max() < 0.5  # starts where the box is
        step = np.hypot(*(lane[1, :, :2] - lane[0, :, :2]).T)
        speed = np.hypot(*velocities[moving].T)
        assert np.all(step <= speed + 1e-6) and np.all(step >= 0.8 * speed)  # along a (possibly curved) lane
        checked += 1
    assert checked > 0
