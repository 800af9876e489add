"""Training of the RWM: resumable, DDP-ready (``torchrun`` with the gloo backend), CSV logs.

``out_dir`` receives ``rwm_last.pt`` (every ``checkpoint_every`` steps, atomically), ``rwm.pt`` (the final
model), ``train_log.csv`` (one row per ``log_every`` steps: every loss term, lr, throughput, validation loss)
and ``train_summary.json``. A resumed run continues from ``rwm_last.pt`` with the optimiser, the schedule and
every random state restored, so N steps in one go and N steps with a kill in between give the same weights;
log rows past the checkpoint are dropped on resume (no duplicates).

Under ``torchrun --nproc_per_node N`` each rank draws its own batches (seed + rank), gradients are averaged by
DDP, and rank 0 alone featurizes first, logs and writes checkpoints.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist

from agents.rwm.config import RWMConfig
from agents.rwm.data import LabelStore, load_inputs, load_store, make_batch, to_torch
from agents.rwm.encoders import layout_for
from agents.rwm.losses import TERMS, rwm_losses
from agents.rwm.model import RewardWorldModel
from irlvla_bench.io.atomic import atomic_path, write_json_atomic

CHECKPOINT_LAST = "rwm_last.pt"
CHECKPOINT_FINAL = "rwm.pt"
LOG_FILE = "train_log.csv"


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Distributed:
    """gloo process group when launched by torchrun (WORLD_SIZE > 1), else a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Distributed(dist.get_rank(), dist.get_world_size())


def split_scenes(store: LabelStore, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) scene indices; whole logs go to validation so it measures unseen places."""
    logs = sorted({Path(f).parent.name for f in store.case_file})
    count = int(round(fraction * len(logs)))
    if fraction > 0 and len(logs) > 1:
        count = max(1, min(count, len(logs) - 1))
    held = set(logs[len(logs) - count:]) if count else set()
    is_val = np.array([Path(f).parent.name in held for f in store.case_file])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class _Step(torch.nn.Module):
    """Scene encoding, heads and the reference guess as one forward, so DDP sees every parameter used."""

    def __init__(self, model: RewardWorldModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> tuple[dict, torch.Tensor]:
        scene = self.model.encode(batch["bev"], batch["ego"])
        heads = self.model(scene, batch["poses"], batch["states"], batch["previous"], batch["previous_states"],
                           batch["has_previous"])
        return heads, self.model.reference_progress(scene)


def build_model(cfg: RWMConfig, bev_channels: int) -> RewardWorldModel:
    return RewardWorldModel(cfg, bev_channels, layout_for(cfg.encoder, bev_channels))


def learning_rate(cfg: RWMConfig, step: int) -> float:
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    return t.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def save_checkpoint(path: Path, model: RewardWorldModel, cfg: RWMConfig, bev_channels: int, step: int,
                    optimizer=None, rng: np.random.Generator | None = None, extra: dict | None = None) -> None:
    payload = {"config": cfg.to_dict(), "model": model.state_dict(), "bev_channels": bev_channels, "step": step,
               "optimizer": optimizer.state_dict() if optimizer is not None else None,
               "numpy_rng": rng.bit_generator.state if rng is not None else None,
               "torch_rng": torch.get_rng_state(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _log_rows_until(path: Path, step: int) -> None:
    """Keep the log rows of steps <= ``step`` (the resumed run rewrites the rest)."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(r for r in rows if int(r["step"]) <= step)


LOG_FIELDS = ("step", "lr", *TERMS, "total", "trajectories_per_s", *(f"val_{t}" for t in (*TERMS, "total")))


def _append_log(path: Path, row: dict) -> None:
    """One row with the fixed ``LOG_FIELDS`` columns (validation columns empty between validations)."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


@torch.no_grad()
def validation_loss(model: RewardWorldModel, cfg: RWMConfig, store: LabelStore, inputs, scenes: np.ndarray) -> dict:
    """Mean loss terms over fixed batches of the validation scenes (seeded: comparable across steps)."""
    if not len(scenes):
        return {}
    rng = np.random.default_rng(12345)
    t = cfg.train
    totals: dict[str, float] = {}
    batches = 0
    module = model.module if hasattr(model, "module") else model
    module.eval()
    for i in range(0, len(scenes), t.scenes_per_batch):
        batch = to_torch(make_batch(store, inputs, scenes[i:i + t.scenes_per_batch], t.candidates_per_scene, rng))
        heads, reference_guess = _Step(module)(batch)
        terms = rwm_losses(heads, batch, cfg.loss, reference_guess)
        for k, v in terms.items():
            totals[k] = totals.get(k, 0.0) + float(v)
        batches += 1
    module.train()
    return {f"val_{k}": v / batches for k, v in totals.items()}


def train_rwm(cfg: RWMConfig, label_dirs: Sequence[str | Path], out_dir: str | Path, *, resume: bool = False,
              features_cache: str | Path | None = None, steps: int | None = None,
              log: Callable[[str], None] = print) -> dict:
    """Train (or resume) an RWM on label folders; returns the summary (also written as JSON).

    ``steps`` stops early at that step (the schedule still follows ``cfg.train.steps``): what a kill does."""
    t = cfg.train
    torch.set_num_threads(t.threads)
    env = init_distributed()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = load_store(label_dirs)
    if env.main:
        inputs = load_inputs(store, cfg.encoder, cache_root=features_cache,
                             progress=lambda i, n: log(f"featurized {i}/{n}") if i % 50 == 0 or i == n else None)
    if env.world > 1:
        dist.barrier()
    if not env.main:
        inputs = load_inputs(store, cfg.encoder, cache_root=features_cache)
    bev_channels = int(inputs[0].bev.shape[0])
    train_scenes, val_scenes = split_scenes(store, t.validation_scenes)

    torch.manual_seed(t.seed)
    model = build_model(cfg, bev_channels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    rng = np.random.default_rng(t.seed + env.rank)
    start = 0
    last = out / CHECKPOINT_LAST
    if resume and last.exists():
        ckpt = load_checkpoint(last)
        if RWMConfig.from_dict(ckpt["config"]) != cfg:
            raise ValueError(f"{last}: was trained with a different config; resume needs the same one")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["step"])
        if ckpt.get("numpy_rng") is not None and env.world == 1:
            rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        if env.main:
            _log_rows_until(out / LOG_FILE, start)
            log(f"resumed from {last} at step {start}")
    elif env.main:
        (out / LOG_FILE).unlink(missing_ok=True)
    step_fn = _Step(model)
    net = torch.nn.parallel.DistributedDataParallel(step_fn) if env.world > 1 else step_fn
    stop = t.steps if steps is None else min(steps, t.steps)
    window: dict[str, float] = {}
    window_count, window_start, trajectories = 0, time.perf_counter(), 0
    t0 = time.perf_counter()
    model.train()
    for step in range(start, stop):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        scenes = rng.choice(train_scenes, t.scenes_per_batch, replace=len(train_scenes) < t.scenes_per_batch)
        batch = to_torch(make_batch(store, inputs, scenes, t.candidates_per_scene, rng))
        heads, reference_guess = net(batch)
        terms = rwm_losses(heads, batch, cfg.loss, reference_guess)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        trajectories += batch["poses"].shape[0] * batch["poses"].shape[1]
        for k, v in terms.items():
            window[k] = window.get(k, 0.0) + float(v.detach())
        window_count += 1
        done = step + 1
        if env.main and (done % t.log_every == 0 or done == stop):
            elapsed = time.perf_counter() - window_start
            row = {"step": done, "lr": f"{learning_rate(cfg, step):.6g}"}
            row.update({k: f"{v / window_count:.6f}" for k, v in window.items()})
            row["trajectories_per_s"] = f"{trajectories / elapsed:.1f}"
            if val_scenes.size and (done % t.validation_every == 0 or done == stop):
                row.update({k: f"{v:.6f}" for k, v in validation_loss(model, cfg, store, inputs, val_scenes).items()})
            _append_log(out / LOG_FILE, row)
            log(f"step {done}/{t.steps} loss {window['total'] / window_count:.4f} "
                f"({trajectories / elapsed:.0f} traj/s)")
            window, window_count, window_start, trajectories = {}, 0, time.perf_counter(), 0
        if env.main and (done % t.checkpoint_every == 0 or done == stop):
            save_checkpoint(last, model, cfg, bev_channels, done, optimizer, rng)
    summary = {"steps": stop, "seconds": round(time.perf_counter() - t0, 2), "train_scenes": int(len(train_scenes)),
               "validation_scenes": int(len(val_scenes)), "label_dirs": [str(d) for d in label_dirs],
               "bev_channels": bev_channels, "world_size": env.world}
    if env.main:
        if stop == t.steps:
            save_checkpoint(out / CHECKPOINT_FINAL, model, cfg, bev_channels, stop)
        write_json_atomic(out / "train_summary.json", summary, indent=2)
    if env.world > 1:
        dist.barrier()
    return summary
