"""The traffic step of the scoring pipeline: what the other road users do while the ego follows a proposal.

A policy turns the case's logged objects (and, for reactive policies, the simulated ego states) into
``Observation``s, the arrays the collision and TTC kernels read. Policies whose traffic does not depend on the
ego return a single observation shared by every row; reactive ones return one per row. The metrics never
know which policy produced their input.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
from numba import njit

from irlvla_bench.types import ObjectType, TrackedObjects


@dataclass(frozen=True)
class Observation:
    """Objects over the 41 frames for a batch of B ego rows (B = 1 when shared).

    ``corners[b, f, o]`` is the box polygon (4, 2); ``centers`` its centroid; ``radius`` the half diagonal
    (broad phase). ``first_stopped[b, o]`` is nuPlan's ``is_track_stopped`` of the object's first appearance
    (static objects always count as stopped), which NAVSIM uses for the collision type.
    """

    tokens: tuple[str, ...]
    corners: np.ndarray  # (B, F, O, 4, 2)
    centers: np.ndarray  # (B, F, O, 2)
    radius: np.ndarray  # (B, F, O)
    present: np.ndarray  # (B, F, O) bool
    is_agent: np.ndarray  # (O,) bool
    first_stopped: np.ndarray  # (B, O) bool

    @property
    def batch(self) -> int:
        return self.corners.shape[0]


def box_corners(boxes: np.ndarray) -> np.ndarray:
    """(..., >=5) boxes (x, y, heading, length, width, ...) -> (..., 4, 2) corners FL, RL, RR, FR."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64)
    corners = np.empty(boxes.shape[:-1] + (4, 2))
    _box_corners_kernel(boxes.reshape(-1, boxes.shape[-1]), corners.reshape(-1, 4, 2))
    return corners


@njit(cache=True, error_model="numpy")
def _box_corners_kernel(boxes, corners):
    # Term order x + lon*half_l*c - lat*half_w*s, as the NumPy formulation that matches NAVSIM's objects (numba's
    # cos/sin equal NumPy's bit for bit; tests/test_epdms_geometry.py checks it); one pass instead of ~20 NumPy
    # calls over every frame and object, once per reactive rollout.
    signs = ((1.0, 1.0), (-1.0, 1.0), (-1.0, -1.0), (1.0, -1.0))
    for n in range(boxes.shape[0]):
        x, y, h = boxes[n, 0], boxes[n, 1], boxes[n, 2]
        half_l, half_w = boxes[n, 3] / 2.0, boxes[n, 4] / 2.0
        c, s = np.cos(h), np.sin(h)
        for i in range(4):
            lon, lat = signs[i]
            corners[n, i, 0] = x + lon * half_l * c - lat * half_w * s
            corners[n, i, 1] = y + lon * half_l * s + lat * half_w * c


def observation_from_tracks(tracks: TrackedObjects, stopped_speed: float) -> Observation:
    """A batch-1 observation of logged (or already simulated) tracks."""
    boxes = np.where(tracks.present[..., None], tracks.boxes, 0.0)
    agent = np.array([ObjectType(t).is_agent for t in tracks.types], dtype=np.bool_)
    first = tracks.first_appearance()
    cols = np.arange(tracks.num_objects)
    first_velocity = tracks.velocities[first, cols] if tracks.num_objects else np.zeros((0, 2))
    first_speed = np.hypot(first_velocity[:, 0], first_velocity[:, 1])
    first_stopped = ~agent | (first_speed <= stopped_speed)
    return Observation(
        tokens=tracks.tokens,
        corners=box_corners(boxes)[None],
        centers=boxes[None, ..., :2].copy(),
        radius=np.hypot(boxes[..., 3], boxes[..., 4])[None] / 2.0,
        present=tracks.present[None].copy(),
        is_agent=agent,
        first_stopped=first_stopped[None],
    )


class TrafficPolicy(Protocol):
    name: str
    reacts_to_ego: bool

    def observe(self, scene, ego_states: np.ndarray) -> Observation:
        """Observation(s) for ``ego_states`` (R, 41, 11): batch 1 if shared, else batch R."""


_POLICIES: dict[str, Callable[[], TrafficPolicy]] = {}


def register_policy(name: str):
    def wrap(factory):
        if name in _POLICIES:
            raise ValueError(f"traffic policy {name!r} is already registered")
        _POLICIES[name] = factory
        return factory

    return wrap


def get_policy(name: str) -> TrafficPolicy:
    if name not in _POLICIES:
        close = difflib.get_close_matches(name, list(_POLICIES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown traffic policy {name!r}{hint} (known: {', '.join(sorted(_POLICIES))})")
    return _POLICIES[name]()


def available_policies() -> list[str]:
    return sorted(_POLICIES)
