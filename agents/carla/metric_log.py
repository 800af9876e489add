"""``SAVE_PATH/<save_name>/metric_info.json``: the per-step hero kinematics Bench2Drive's efficiency/smoothness
tool reads (the leaderboard's ``AutonomousAgent.get_metric_info``, recorded every step by Bench2DriveZoo agents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from irlvla_bench.io.atomic import write_text_atomic


def hero_metric_info(hero: Any) -> dict[str, list[float]]:
    """One entry, world frame, CARLA units (angular velocity in deg/s)."""
    transform = hero.get_transform()

    def vec(v: Any) -> list[float]:
        return [float(v.x), float(v.y), float(v.z)]

    rot = transform.rotation
    return {
        "acceleration": vec(hero.get_acceleration()),
        "angular_velocity": vec(hero.get_angular_velocity()),
        "forward_vector": vec(transform.get_forward_vector()),
        "right_vector": vec(transform.get_right_vector()),
        "location": vec(transform.location),
        "rotation": [float(rot.roll), float(rot.pitch), float(rot.yaw)],
    }


class MetricInfoRecorder:
    """Collects one entry per agent step and rewrites the file atomically every ``flush_every`` steps.

    The Zoo rewrites it on every step (quadratic I/O over a 4000-step route); a crash here loses at most
    ``flush_every`` steps, and the leaderboard re-runs crashed routes under a new save_name anyway.
    """

    def __init__(self, folder: str | Path, flush_every: int = 20):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "metric_info.json"
        self.flush_every = max(1, flush_every)
        self.entries: dict[str, dict[str, list[float]]] = {}

    def record(self, step: int, hero: Any) -> None:
        self.entries[str(step)] = hero_metric_info(hero)
        if len(self.entries) % self.flush_every == 0:
            self.flush()

    def flush(self) -> None:
        write_text_atomic(self.path, json.dumps(self.entries))
