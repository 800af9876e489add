"""Features and targets of the ego-status MLP, without torch (the same feature function serves training and
inference, so the two cannot drift apart).

Features, oldest history frame first: for each of the ``history_frames`` ego statuses its pose relative to the
current frame (x, y, heading), velocity (2) and acceleration (2); then the current driving command (4).
Targets: the logged future ego poses of the 8 frames after the current one, in the current ego frame (what
NAVSIM's ``Scene.get_future_trajectory`` gives the human agent and its training targets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.base import NUM_POSES, AgentInput, SensorConfig
from agents.inputs import build_agent_input, relative_pose
from irlvla_bench.caching.scene import SceneData, load_scene
from irlvla_bench.io.splits import list_scenes, load_split

PER_FRAME = 7  # pose (3) + velocity (2) + acceleration (2)
COMMAND_SIZE = 4


def feature_size(history_frames: int) -> int:
    return history_frames * PER_FRAME + COMMAND_SIZE


def ego_features(agent_input: AgentInput, history_frames: int) -> np.ndarray:
    """(feature_size,) float64 features of the last ``history_frames`` ego statuses."""
    statuses = agent_input.ego_statuses[-history_frames:]
    if len(statuses) != history_frames:
        raise ValueError(f"{agent_input.token}: need {history_frames} ego statuses, "
                         f"got {len(agent_input.ego_statuses)}")
    parts = [np.concatenate([s.pose, s.velocity, s.acceleration]) for s in statuses]
    parts.append(np.asarray(statuses[-1].driving_command, dtype=np.float64))
    return np.concatenate(parts).astype(np.float64)


def future_poses(scene: SceneData, num_poses: int = NUM_POSES) -> np.ndarray | None:
    """(num_poses, 3) logged future poses in the current ego frame; None when the scene ends too early."""
    future = scene.frames[scene.num_history:scene.num_history + num_poses]
    if len(future) < num_poses:
        return None
    origin = scene.current.ego_pose
    return np.stack([relative_pose(origin, f.ego_pose) for f in future])


@dataclass(frozen=True)
class TrainingSet:
    features: np.ndarray  # (N, D)
    targets: np.ndarray  # (N, 8, 3)
    tokens: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()  # (token, why)

    def __len__(self) -> int:
        return len(self.tokens)


def training_set(data_root: str | Path, split: str = "navtrain", *, history_frames: int = 4) -> TrainingSet:
    """Every scene of ``split`` with enough history and 8 future frames; the others are listed as skipped."""
    spec = load_split(split, data_root)
    listing = list_scenes(data_root, spec)
    sensors = SensorConfig(history_frames=history_frames)
    features, targets, tokens, skipped = [], [], [], list(listing.problems)
    for ref in listing.scenes:
        scene = load_scene(ref)
        target = future_poses(scene)
        if target is None:
            skipped.append((ref.token, f"fewer than {NUM_POSES} future frames"))
            continue
        if scene.num_history < history_frames:
            skipped.append((ref.token, f"{scene.num_history} history frames, the model needs {history_frames}"))
            continue
        features.append(ego_features(build_agent_input(scene, sensors), history_frames))
        targets.append(target)
        tokens.append(ref.token)
    dim = feature_size(history_frames)
    return TrainingSet(np.asarray(features, dtype=np.float64).reshape(-1, dim),
                       np.asarray(targets, dtype=np.float64).reshape(-1, NUM_POSES, 3), tuple(tokens), tuple(skipped))
