"""Pose helpers shared by the privileged baselines: global -> ego frame, and resampling a pose sequence."""

from __future__ import annotations

import numpy as np


def wrap(angle: np.ndarray) -> np.ndarray:
    """Angles in (-pi, pi] via atan2, the convention of ``agents.inputs.relative_pose``."""
    return np.arctan2(np.sin(angle), np.cos(angle))


def to_ego_frame(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """``poses`` (N, 3) global (x, y, heading) expressed in the frame of ``origin`` (3,)."""
    poses = np.asarray(poses, dtype=np.float64)
    c, s = np.cos(origin[2]), np.sin(origin[2])
    dx, dy = poses[:, 0] - origin[0], poses[:, 1] - origin[1]
    return np.column_stack([c * dx + s * dy, -s * dx + c * dy, wrap(poses[:, 2] - origin[2])])


def resample(poses: np.ndarray, interval_s: float, times_s: np.ndarray) -> np.ndarray:
    """Poses sampled every ``interval_s`` from t = 0, linearly interpolated at ``times_s``.

    Headings are unwrapped first: interpolating raw angles across the +-pi seam would swing through zero.
    Times past the last pose are an error (extrapolating a planner's output would invent a trajectory).
    """
    poses = np.asarray(poses, dtype=np.float64)
    times_s = np.asarray(times_s, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 3 or len(poses) < 2:
        raise ValueError(f"expected at least two (x, y, heading) poses, got shape {poses.shape}")
    if interval_s <= 0:
        raise ValueError(f"interval must be positive, got {interval_s}")
    knots = np.arange(len(poses)) * interval_s
    end = knots[-1] + 1e-9 * max(1.0, knots[-1])  # tolerate rounding in k * interval
    if times_s.min() < -1e-9 or times_s.max() > end:
        raise ValueError(f"poses cover 0 .. {knots[-1]:.3f} s, asked for {times_s.min():.3f} .. {times_s.max():.3f} s")
    heading = np.unwrap(poses[:, 2])
    out = np.column_stack([np.interp(times_s, knots, poses[:, 0]), np.interp(times_s, knots, poses[:, 1]),
                           np.interp(times_s, knots, heading)])
    out[:, 2] = wrap(out[:, 2])
    return out
