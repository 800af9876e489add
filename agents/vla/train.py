"""Imitation training of the VLA policy: cached samples -> AdamW with warm-up cosine -> atomic checkpoints.

Exact resume: the data order of an epoch is a function of (seed, epoch), the diffusion noise of a step a function
of (seed, step, rank); the checkpoint holds the model, optimizer, scheduler, grad scaler, the global RNG states
and the position (epoch, step). A resumed run therefore continues with the very batches, noise and learning rate
an uninterrupted run would have used, and gives the same losses.

DDP: launched by ``torchrun`` (``WORLD_SIZE`` > 1) the run joins a process group (gloo on CPU, nccl on GPU);
each rank takes every ``world``-th sample of the global batch; rank 0 builds the cache, writes checkpoints and
logs. Mixed precision (bf16 autocast, fp16 with a grad scaler where bf16 is missing) on GPU only.
"""

from __future__ import annotations

import csv
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from agents.vla.augment import augment_batch
from agents.vla.config import VLAConfig, config_from_dict
from agents.vla.data import SampleStore, build_cache, trajectory_anchors
from agents.vla.losses import segmentation_iou, total_loss
from agents.vla.model import IRLVLAModel, to_tensors
from irlvla_bench.io.atomic import atomic_path, write_json_atomic

CHECKPOINT_FORMAT = "irlvla-bench/vla-il/v1"
LOG_FIELDS = ("step", "epoch", "lr", "loss", "plan_cls", "plan_reg", "plan_l1_m", "seg", "det_cls", "det_box",
              "map_cls", "map_pts", "command", "seconds", "cpu_seconds")


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class TrainResult:
    out_dir: Path
    steps: int = 0
    epochs_done: int = 0
    finished: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    samples: int = 0
    losses: list[dict] = field(default_factory=list)  # this process's logged rows
    metrics: dict = field(default_factory=dict)


def lr_factor(step: int, total: int, warmup: int, floor: float) -> float:
    """Linear warm-up to 1, then cosine down to ``floor`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).numpy()


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The diffusion noise / teacher forcing draws of one step: independent of everything else that ran."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 131 + rank) % (2 ** 63 - 1))


def pick_device(name: str | None, info: DistInfo) -> torch.device:
    if name and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def build_model(config: VLAConfig) -> IRLVLAModel:
    torch.manual_seed(config.train.seed)  # initial weights are a function of the seed
    return IRLVLAModel(config)


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


def save_checkpoint(path: Path, model: IRLVLAModel, config: VLAConfig, *, optimizer=None, scheduler=None,
                    scaler=None, state: dict | None = None, meta: dict | None = None) -> Path:
    """Atomic (temp file + ``os.replace``): a reader sees the old checkpoint or the complete new one."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "model": model.state_dict(),
        "state": dict(state or {}),
        "meta": dict(meta or {}),
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        payload["scheduler"] = scheduler.state_dict() if scheduler is not None else None
        payload["scaler"] = scaler.state_dict() if scaler is not None else None
        payload["rng"] = rng_state()
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def rng_state() -> dict:
    """Every global RNG state as tensors and plain numbers, so checkpoints load with ``weights_only=True``."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: str | Path, *, full: bool = False) -> dict:
    """The checkpoint dict (weights-only unpickling: no code runs from the file). ``full`` is accepted for
    symmetry with training code that needs the optimizer and RNG states; every checkpoint holds them as tensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VLA checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not an IL VLA checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    return payload


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[IRLVLAModel, dict]:
    """(model in eval mode, checkpoint payload) from a training or final checkpoint."""
    payload = read_checkpoint(path)
    config = config_from_dict(payload["config"])
    model = IRLVLAModel(config)
    model.load_state_dict(payload["model"])
    return model.to(device).eval(), payload


# --------------------------------------------------------------------------------------------------------------
# Logging


class CSVLog:
    """Appends rows; on resume, rows of steps after the checkpoint are dropped (they will be recomputed)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if path.exists() and resume_step > 0:
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=LOG_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
        self.handle = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOG_FIELDS)

    def write(self, row: dict) -> None:
        self.writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def _tensorboard(out_dir: Path):
    """A SummaryWriter when the ``tensorboard`` package is installed, else None (the CSV log is always there)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


# --------------------------------------------------------------------------------------------------------------
# Evaluation of the perception and command heads


@torch.no_grad()
def evaluate_heads(model: IRLVLAModel, store: SampleStore, batch_size: int = 32,
                   device: torch.device | str = "cpu") -> dict:
    """Command accuracy against the derived labels, per-class BEV segmentation IoU and the planner's L1 / final
    displacement error against the logged future, over every sample of ``store``."""
    from agents.vla.config import SEG_CLASSES

    model.eval()
    iou = np.zeros((2, len(SEG_CLASSES)))
    speed_ok = path_ok = 0
    l1 = fde = 0.0
    g = torch.Generator().manual_seed(0)
    for start in range(0, len(store), batch_size):
        batch = to_tensors(store.batch(range(start, min(len(store), start + batch_size))), device)
        features, plan = model.plan(batch, g)
        iou += segmentation_iou(features.seg_logits, batch["seg"])
        speed_ok += int((features.speed_logits.argmax(-1) == batch["speed_command"]).sum())
        path_ok += int((features.path_logits.argmax(-1) == batch["path_command"]).sum())
        err = (plan.trajectory[..., :2] - batch["trajectory"][..., :2].float()).norm(dim=-1)
        l1 += float((plan.trajectory[..., :2] - batch["trajectory"][..., :2].float()).abs().mean(dim=(1, 2)).sum())
        fde += float(err[:, -1].sum())
    n = len(store)
    per_class = {name: float(i / u) if u > 0 else float("nan") for name, i, u in zip(SEG_CLASSES, *iou)}
    return {"samples": n, "speed_command_accuracy": speed_ok / n, "path_command_accuracy": path_ok / n,
            "command_accuracy": (speed_ok + path_ok) / (2 * n), "segmentation_iou": per_class,
            "segmentation_miou": float(np.nanmean(list(per_class.values()))), "plan_l1_m": l1 / n,
            "plan_fde_m": fde / n}


# --------------------------------------------------------------------------------------------------------------
# Training


def _autocast(device: torch.device, enabled: bool):
    if device.type != "cuda" or not enabled:
        return torch.autocast(device_type=device.type, enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _progress(enabled: bool, total: int, done: int):
    if not enabled or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("train il {task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   transient=False)
    bar.start()
    task = bar.add_task("", total=total, completed=done)
    return bar, task


def train(data_root: str | Path, split: str, config: VLAConfig, out_dir: str | Path, *,
          cache_dir: str | Path | None = None, resume: bool = True, max_steps: int | None = None,
          device: str | None = None, eval_split: str | None = None, save_every: int = 0,
          progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train (or resume) the IL policy on ``split`` of the dataset at ``data_root``; see the module docstring.

    ``max_steps`` stops early (after a checkpoint; a later call with resume continues); ``save_every`` adds a
    checkpoint every that many steps besides the one at every epoch end.
    """
    t_start = time.perf_counter()
    info = dist_info()
    out = Path(out_dir)
    say = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not info.is_main:
        say = lambda msg: None  # noqa: E731
    tcfg = config.train
    if tcfg.num_threads > 0:
        torch.set_num_threads(tcfg.num_threads)
    dev = pick_device(device, info)
    distributed = info.world > 1
    if distributed:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    if tcfg.batch_size % info.world:
        raise ValueError(f"batch size {tcfg.batch_size} is not divisible by the {info.world} processes")
    out.mkdir(parents=True, exist_ok=True)
    cache_root = Path(cache_dir) if cache_dir is not None else out / "cache"

    def barrier():
        if distributed:
            import torch.distributed as dist

            dist.barrier()

    if info.is_main:
        say(f"caching {split} of {data_root} -> {cache_root}")
        build_cache(data_root, split, config, cache_root)
    barrier()
    store = SampleStore(build_cache(data_root, split, config, cache_root))  # built: this only reads the index
    per_rank = tcfg.batch_size // info.world
    steps_per_epoch = len(store) // tcfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(store)} samples are fewer than one batch of {tcfg.batch_size}")
    total_steps = steps_per_epoch * tcfg.epochs

    ckpt_path = out / "checkpoint.pt"
    payload = read_checkpoint(ckpt_path, full=True) if resume and ckpt_path.exists() else None
    model = build_model(config)
    if payload is None:
        model.planner.set_anchors(trajectory_anchors(store.arrays["trajectory"], config.planner.num_anchors,
                                                     seed=tcfg.seed))
    else:
        model.load_state_dict(payload["model"])
    model.to(dev)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith("token_pos") or name.endswith("queries") else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": tcfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=tcfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, tcfg.warmup_steps, tcfg.min_lr_ratio))
    use_amp = dev.type == "cuda" and tcfg.mixed_precision
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and not torch.cuda.is_bf16_supported()) \
        if dev.type == "cuda" else None
    step, epoch, elapsed = 0, 0, 0.0
    if payload is not None:
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        set_rng_state(payload["rng"])
        step, elapsed = payload["state"]["step"], payload["state"]["elapsed"]
        say(f"resumed from {ckpt_path} at step {step}")
    net = model
    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    result = TrainResult(out, samples=len(store))
    csv_log = CSVLog(out / "train_log.csv", step) if info.is_main else None
    tb = _tensorboard(out) if info.is_main else None
    bar = _progress(progress and info.is_main, total_steps, step)
    meta = {"data_root": str(data_root), "split": split, "samples": len(store), "world_size": info.world,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps}

    def checkpoint(finished: bool) -> None:
        if info.is_main:
            save_checkpoint(ckpt_path, model, config, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                            state={"step": step, "elapsed": elapsed + time.perf_counter() - t_loop,
                                   "cpu": cpu_spent + time.process_time() - c_loop, "finished": finished},
                            meta=meta)
        barrier()

    if tcfg.budget_clock not in ("wall", "cpu"):
        raise ValueError(f"budget_clock must be 'wall' or 'cpu', got {tcfg.budget_clock!r}")
    cpu_spent = payload["state"].get("cpu", 0.0) if payload is not None else 0.0
    c_loop = time.process_time()

    def used() -> float:
        """Seconds against the budget: wall or CPU, including what runs before a resume used."""
        if tcfg.budget_clock == "cpu":
            return cpu_spent + time.process_time() - c_loop
        return elapsed + time.perf_counter() - t_loop

    model.train()
    t_loop = time.perf_counter()
    stop_at = total_steps if max_steps is None else min(total_steps, max_steps)
    stopped_early = False
    while step < stop_at:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        order = epoch_order(len(store), tcfg.seed, epoch)
        global_idx = order[in_epoch * tcfg.batch_size:(in_epoch + 1) * tcfg.batch_size]
        gen = step_generator(tcfg.seed, step, info.rank)
        batch = augment_batch(to_tensors(store.batch(global_idx[info.rank::info.world][:per_rank])), config, gen)
        batch = {k: v.to(dev) for k, v in batch.items()}
        commands = mask = None
        if config.command.teacher_forcing > 0:
            commands, mask = _teacher_commands(batch, config.command.teacher_forcing, gen)
        with _autocast(dev, use_amp):
            features, out_dec = net(batch, gen, commands, mask)
            loss, parts = total_loss(model.planner, features, out_dec, batch, config)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        step += 1
        row = {"step": step, "epoch": epoch, "lr": lr, **parts,
               "seconds": round(elapsed + time.perf_counter() - t_loop, 3),
               "cpu_seconds": round(cpu_spent + time.process_time() - c_loop, 3)}
        result.losses.append(row)
        if csv_log is not None:
            csv_log.write(row)
        if tb is not None:
            for key, value in parts.items():
                tb.add_scalar(f"train/{key}", value, step)
        if bar is not None:
            bar[0].update(bar[1], completed=step, description=f"epoch {epoch} loss {parts['loss']:.3f}")
        elif step % max(1, tcfg.log_every) == 0 or step == stop_at:
            say(f"step {step}/{total_steps} epoch {epoch} loss {parts['loss']:.3f} plan_l1 {parts['plan_l1_m']:.2f} m "
                f"seg {parts['seg']:.3f} cmd {parts['command']:.3f} ({row['seconds']:.0f} s)")
        at_epoch_end = step % steps_per_epoch == 0
        over_budget = tcfg.time_budget_s > 0 and used() > tcfg.time_budget_s
        if distributed:
            flag = torch.tensor([1.0 if over_budget else 0.0])
            import torch.distributed as dist

            dist.all_reduce(flag)  # every rank stops at the same step
            over_budget = bool(flag.item() > 0)
        if at_epoch_end or (save_every and step % save_every == 0) or over_budget or step == stop_at:
            checkpoint(finished=step >= total_steps)
        if over_budget and step < stop_at:
            say(f"{tcfg.budget_clock} time budget of {tcfg.time_budget_s:.0f} s reached at step {step}: stopping "
                f"(checkpoint saved)")
            stopped_early = True
            break
    if bar is not None:
        bar[0].stop()
    if csv_log is not None:
        csv_log.close()
    if tb is not None:
        tb.close()
    result.steps = step
    result.epochs_done = step // steps_per_epoch
    result.finished = step >= total_steps or stopped_early
    result.seconds = elapsed + time.perf_counter() - t_loop
    result.cpu_seconds = cpu_spent + time.process_time() - c_loop
    if info.is_main and result.finished:
        save_checkpoint(out / "model.pt", model, config, state={"step": step, "elapsed": result.seconds},
                        meta=meta)
        if eval_split:
            say(f"evaluating the heads on {eval_split}")
            result.metrics = evaluate_heads(model, SampleStore(build_cache(data_root, eval_split, config, cache_root)),
                                            device=dev)
            result.metrics["split"] = eval_split
        write_json_atomic(out / "train_summary.json", {
            "config": config.name, "steps": step, "epochs": result.epochs_done, "seconds": round(result.seconds, 1),
            "cpu_seconds": round(result.cpu_seconds, 1), "threads": torch.get_num_threads(),
            "stopped_by_time_budget": stopped_early, "samples": len(store), "world_size": info.world,
            "last_losses": result.losses[-1] if result.losses else None, "eval": result.metrics,
            "wall_seconds_including_cache": round(time.perf_counter() - t_start, 1)}, indent=1)
    barrier()
    if distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return result


def _teacher_commands(batch: dict, probability: float, gen: torch.Generator):
    """(one-hot derived commands, per-sample mask drawn with ``probability``) for teacher forcing."""
    from agents.vla.commands import PATH_COMMANDS, SPEED_COMMANDS

    mask = torch.rand(batch["speed_command"].shape[0], generator=gen) < probability
    speed = torch.nn.functional.one_hot(batch["speed_command"], len(SPEED_COMMANDS)).float()
    path = torch.nn.functional.one_hot(batch["path_command"], len(PATH_COMMANDS)).float()
    return (speed, path), mask
