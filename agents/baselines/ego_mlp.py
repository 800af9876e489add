"""A trainable ego-status MLP (NAVSIM's ``EgoStatusMLPAgent`` idea, with history): ego statuses -> 8 poses.

Inputs and targets are described in ``ego_mlp_data``. Features and targets are standardised with statistics of
the training set, which travel in the checkpoint together with the state dict and both configs, so a
checkpoint is all an agent needs. Training is full-batch-friendly Adam with an L1 loss on the poses (NAVSIM's
loss), seeded, and takes seconds on the generated world's navtrain split on two CPU cores.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from agents.base import (NUM_POSES, Agent, AgentInput, CheckpointRequiredError, SensorConfig, Trajectory)
from agents.baselines.ego_mlp_data import TrainingSet, ego_features, feature_size
from irlvla_bench.io.atomic import atomic_path

CHECKPOINT_FORMAT = "irlvla-bench/ego-mlp/v1"
MIN_STD = 1e-6  # features that never vary (the current pose is always 0) are left unscaled


@dataclass(frozen=True)
class EgoMLPConfig:
    history_frames: int = 4
    hidden: int = 128
    layers: int = 3  # hidden layers

    def __post_init__(self) -> None:
        if self.history_frames < 1 or self.hidden < 1 or self.layers < 1:
            raise ValueError(f"invalid model config {self}")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 300
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"invalid training config {self}")


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)  # mean L1 of the standardised poses, per epoch
    final_l1: float = float("nan")  # mean L1 of the poses [m and rad] on the training set after training
    samples: int = 0
    seconds: float = 0.0


def _stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    return mean, np.where(std < MIN_STD, 1.0, std)


class EgoMLP(torch.nn.Module):
    """Raw features in, ego-frame poses out; the standardisation lives in buffers."""

    def __init__(self, config: EgoMLPConfig, normalisation: dict[str, np.ndarray]):
        super().__init__()
        self.config = config
        dim = feature_size(config.history_frames)
        layers: list[torch.nn.Module] = []
        width = dim
        for _ in range(config.layers):
            layers += [torch.nn.Linear(width, config.hidden), torch.nn.ReLU()]
            width = config.hidden
        layers.append(torch.nn.Linear(width, NUM_POSES * 3))
        self.mlp = torch.nn.Sequential(*layers)
        for key, shape in (("feature_mean", (dim,)), ("feature_std", (dim,)),
                           ("target_mean", (NUM_POSES * 3,)), ("target_std", (NUM_POSES * 3,))):
            value = np.asarray(normalisation[key], dtype=np.float32).reshape(shape)
            self.register_buffer(key, torch.from_numpy(value.copy()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features - self.feature_mean) / self.feature_std
        out = self.mlp(z) * self.target_std + self.target_mean
        return out.reshape(-1, NUM_POSES, 3)

    def normalisation(self) -> dict[str, list[float]]:
        return {k: getattr(self, k).tolist() for k in ("feature_mean", "feature_std", "target_mean", "target_std")}


def train_ego_mlp(data: TrainingSet, model_config: EgoMLPConfig = EgoMLPConfig(),
                  train_config: TrainConfig = TrainConfig(),
                  progress: Callable[[int, float], None] | None = None) -> tuple[EgoMLP, TrainResult]:
    if len(data) == 0:
        raise ValueError("no training samples (does the split have scenes with 8 future frames?)")
    if data.features.shape[1] != feature_size(model_config.history_frames):
        raise ValueError(f"features have {data.features.shape[1]} columns, the model expects "
                         f"{feature_size(model_config.history_frames)} (history_frames mismatch)")
    t0 = time.perf_counter()
    torch.manual_seed(train_config.seed)  # initial weights
    flat_targets = data.targets.reshape(len(data), -1)
    f_mean, f_std = _stats(data.features)
    t_mean, t_std = _stats(flat_targets)
    model = EgoMLP(model_config, {"feature_mean": f_mean, "feature_std": f_std,
                                  "target_mean": t_mean, "target_std": t_std})
    x = torch.from_numpy(data.features.astype(np.float32))
    y = torch.from_numpy(data.targets.astype(np.float32))
    optimiser = torch.optim.Adam(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    order = torch.Generator().manual_seed(train_config.seed)  # batch order, independent of the global RNG
    result = TrainResult(samples=len(data))
    model.train()
    for epoch in range(train_config.epochs):
        perm = torch.randperm(len(data), generator=order)
        total = 0.0
        for start in range(0, len(data), train_config.batch_size):
            idx = perm[start:start + train_config.batch_size]
            # L1 on the standardised poses: metres and radians then weigh alike.
            error = (model(x[idx]) - y[idx]).reshape(len(idx), -1) / model.target_std
            loss = error.abs().mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(idx)
        result.losses.append(total / len(data))
        if progress is not None:
            progress(epoch, result.losses[-1])
    model.eval()
    with torch.no_grad():
        result.final_l1 = float((model(x) - y).abs().mean())
    result.seconds = time.perf_counter() - t0
    return model, result


def save_checkpoint(path: str | Path, model: EgoMLP, train_config: TrainConfig | None = None,
                    result: TrainResult | None = None, meta: dict | None = None) -> Path:
    """Atomic: a reader sees the previous checkpoint or the complete new one."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": asdict(model.config),
        "train_config": asdict(train_config) if train_config is not None else None,
        "normalisation": model.normalisation(),
        "state_dict": model.state_dict(),
        "train": {"losses": list(result.losses), "final_l1": result.final_l1, "samples": result.samples,
                  "seconds": result.seconds}
        if result is not None else None,
        "meta": dict(meta or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | Path) -> tuple[EgoMLP, dict]:
    """The model (eval mode, CPU) and the whole checkpoint dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ego_mlp checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no code from the file
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: not an ego_mlp checkpoint (format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    model = EgoMLP(EgoMLPConfig(**payload["config"]), payload["normalisation"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model, payload


class EgoStatusMLPAgent(Agent):
    name = "ego_mlp"

    def __init__(self, checkpoint: str | Path | None = None):
        if checkpoint is None:
            raise CheckpointRequiredError("ego_mlp needs a checkpoint: use 'ego_mlp:PATH' "
                                          "(train one with `irlvla-bench train ego-mlp --data ROOT --out PATH`)")
        self.checkpoint = Path(checkpoint)
        # Load now: a wrong path or file should fail before the first frame, not in the middle of a split.
        self._model, payload = load_checkpoint(self.checkpoint)
        self.config: EgoMLPConfig = self._model.config
        self.meta = payload.get("meta") or {}

    def sensor_config(self) -> SensorConfig:
        return SensorConfig(history_frames=self.config.history_frames)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        return self.compute_trajectories([agent_input])[0]

    def compute_trajectories(self, agent_inputs: Sequence[AgentInput]) -> list[Trajectory]:
        if not agent_inputs:
            return []
        features = np.stack([ego_features(x, self.config.history_frames) for x in agent_inputs])
        with torch.no_grad():
            poses = self._model(torch.from_numpy(features.astype(np.float32))).double().numpy()
        return [Trajectory(p) for p in poses]
