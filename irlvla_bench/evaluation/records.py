"""Per-token results: what the agent returned (or how it failed) and what the aggregation needs of its score.

Records round-trip through JSON exactly (Python writes floats with ``repr``), so a resumed run aggregates the
very same numbers as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from evaluators.epdms.score import SUB_METRICS

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class FrameRecord:
    """The one-proposal EPDMS of a frame, with what the two-stage aggregation reads (``TokenRow``'s fields)."""

    metrics: dict[str, float]  # SUB_METRICS after the human filter
    multiplicative: float
    score_single_frame: float
    simulated_states: np.ndarray  # (41, 11)
    endpoint: np.ndarray  # (2,) the agent's last pose, global
    start_time_us: int
    start_point: np.ndarray  # (2,) ego rear axle at t = 0

    def to_json(self) -> dict:
        return {"metrics": {n: self.metrics[n] for n in SUB_METRICS}, "multiplicative": self.multiplicative,
                "score_single_frame": self.score_single_frame,
                "simulated_states": np.asarray(self.simulated_states).tolist(),
                "endpoint": np.asarray(self.endpoint).tolist(), "start_time_us": int(self.start_time_us),
                "start_point": np.asarray(self.start_point).tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "FrameRecord":
        return cls(metrics={n: float(data["metrics"][n]) for n in SUB_METRICS},
                   multiplicative=float(data["multiplicative"]),
                   score_single_frame=float(data["score_single_frame"]),
                   simulated_states=np.asarray(data["simulated_states"], dtype=np.float64),
                   endpoint=np.asarray(data["endpoint"], dtype=np.float64),
                   start_time_us=int(data["start_time_us"]),
                   start_point=np.asarray(data["start_point"], dtype=np.float64))


@dataclass(frozen=True)
class TokenRecord:
    """One token's outcome. ``status == "ok"`` with ``scores is None`` is a planned but not yet scored token (a
    resumed run scores it without calling the agent again)."""

    token: str
    log_name: str
    frame_type: str
    stage: str
    status: str  # OK | FAILED
    poses: np.ndarray | None = None  # (8, 3) ego frame
    seconds_agent: float = float("nan")
    error: str = ""
    traceback: str = ""
    scores: FrameRecord | None = None

    @property
    def complete(self) -> bool:
        return self.status == FAILED or self.scores is not None

    def with_scores(self, scores: FrameRecord) -> "TokenRecord":
        return replace(self, scores=scores)

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "log_name": self.log_name, "frame_type": self.frame_type, "stage": self.stage,
                "status": self.status, "poses": None if self.poses is None else np.asarray(self.poses).tolist(),
                "seconds_agent": self.seconds_agent, "error": self.error, "traceback": self.traceback,
                "scores": None if self.scores is None else self.scores.to_json()}

    @classmethod
    def from_json(cls, data: dict) -> "TokenRecord":
        return cls(token=data["token"], log_name=data["log_name"], frame_type=data["frame_type"], stage=data["stage"],
                   status=data["status"],
                   poses=None if data["poses"] is None else np.asarray(data["poses"], dtype=np.float64),
                   seconds_agent=float(data["seconds_agent"]), error=data["error"], traceback=data["traceback"],
                   scores=None if data["scores"] is None else FrameRecord.from_json(data["scores"]))
