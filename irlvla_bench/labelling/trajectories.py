"""Pure trajectory arithmetic on ego-frame poses (N, 8, 3) at t = 0.5 .. 4.0 s, the implicit start (0, 0, 0).

Shared by the candidate generators (perturbations, vocabulary augmentation) and by the anchors taken from a
scoring case (human future, PDM-Closed reference, the previous frame's plan).
"""

from __future__ import annotations

import numpy as np

from irlvla_bench.types import NUM_TRAJECTORY_POSES, TRAJECTORY_INTERVAL_S, ScoringCase

POSE_TIMES_S = TRAJECTORY_INTERVAL_S * np.arange(1, NUM_TRAJECTORY_POSES + 1)
# Displacements shorter than this leave the heading where it was (a standing car has no path direction).
_MIN_STEP_M = 0.05


def to_ego_frame(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Global (..., 3) poses -> the frame of the global pose ``origin`` (3,); headings wrapped to (-pi, pi]."""
    c, s = np.cos(origin[2]), np.sin(origin[2])
    dx, dy = poses[..., 0] - origin[0], poses[..., 1] - origin[1]
    heading = np.arctan2(np.sin(poses[..., 2] - origin[2]), np.cos(poses[..., 2] - origin[2]))
    return np.stack([c * dx + s * dy, -s * dx + c * dy, heading], axis=-1)


def to_global(origin: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Inverse of ``to_ego_frame``."""
    c, s = np.cos(origin[2]), np.sin(origin[2])
    x, y = poses[..., 0], poses[..., 1]
    heading = np.arctan2(np.sin(poses[..., 2] + origin[2]), np.cos(poses[..., 2] + origin[2]))
    return np.stack([origin[0] + c * x - s * y, origin[1] + s * x + c * y, heading], axis=-1)


def with_start(poses: np.ndarray) -> np.ndarray:
    """(N, 8, 3) -> (N, 9, 3) with the current pose (0, 0, 0) prepended as knot 0."""
    start = np.zeros(poses.shape[:-2] + (1, 3))
    return np.concatenate([start, poses], axis=-2)


def path_headings(xy: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Headings of (N, 8, 2) positions from the path direction (start at the origin); where the car barely
    moves the ``fallback`` (N, 8) heading is kept, so a stopping trajectory does not spin."""
    full = np.concatenate([np.zeros(xy.shape[:-2] + (1, 2)), xy], axis=-2)
    forward = np.diff(full, axis=-2)  # segment into pose k
    # Central direction: the mean of the segments into and out of pose k (the last pose uses its own segment).
    out = np.concatenate([forward[..., 1:, :], forward[..., -1:, :]], axis=-2)
    direction = forward + out
    length = np.hypot(direction[..., 0], direction[..., 1])
    heading = np.arctan2(direction[..., 1], direction[..., 0])
    return np.where(length > 2 * _MIN_STEP_M, heading, fallback)


def resample_along_path(poses: np.ndarray, new_s: np.ndarray) -> np.ndarray:
    """Positions/headings at arc lengths ``new_s`` (N, 8) along each (N, 8, 3) path (start included).

    Beyond the path's end the last heading is extrapolated straight (so a faster variant keeps going)."""
    full = with_start(poses)
    seg = np.hypot(*np.moveaxis(np.diff(full[..., :2], axis=-2), -1, 0))
    s = np.concatenate([np.zeros(seg.shape[:-1] + (1,)), np.cumsum(seg, axis=-1)], axis=-1)  # (N, 9)
    out = np.empty(new_s.shape + (3,))
    headings = np.unwrap(full[..., 2], axis=-1)
    for n in range(full.shape[0]):
        sn, target = s[n], new_s[n]
        # np.interp needs increasing knots; drop repeated arc lengths of a standing car.
        keep = np.concatenate([[True], np.diff(sn) > 1e-9])
        sk, xk, yk, hk = sn[keep], full[n, keep, 0], full[n, keep, 1], headings[n, keep]
        if len(sk) == 1:
            out[n, :, 0] = target * np.cos(hk[0])
            out[n, :, 1] = target * np.sin(hk[0])
            out[n, :, 2] = hk[0]
            continue
        inside = np.minimum(target, sk[-1])
        x, y, h = np.interp(inside, sk, xk), np.interp(inside, sk, yk), np.interp(inside, sk, hk)
        extra = np.maximum(target - sk[-1], 0.0)
        out[n, :, 0] = x + extra * np.cos(hk[-1])
        out[n, :, 1] = y + extra * np.sin(hk[-1])
        out[n, :, 2] = h
    out[..., 2] = np.arctan2(np.sin(out[..., 2]), np.cos(out[..., 2]))
    return out


def arc_lengths(poses: np.ndarray) -> np.ndarray:
    """(N, 8) cumulative path length from the origin to each pose."""
    full = with_start(poses)
    seg = np.hypot(*np.moveaxis(np.diff(full[..., :2], axis=-2), -1, 0))
    return np.cumsum(seg, axis=-1)


def reference_poses(case: ScoringCase) -> np.ndarray:
    """The PDM-Closed reference at t = 0.5 .. 4.0 s as (8, 3) ego-frame poses (linear in time between rows)."""
    ref = np.asarray(case.pdm_reference, dtype=np.float64)
    times = np.arange(len(ref)) * case.pdm_reference_interval_s
    heading = np.unwrap(ref[:, 2])
    sample = np.stack([np.interp(POSE_TIMES_S, times, ref[:, 0]), np.interp(POSE_TIMES_S, times, ref[:, 1]),
                       np.interp(POSE_TIMES_S, times, heading)], axis=-1)
    return to_ego_frame(case.ego.rear_axle, sample)


def anchor_poses(case: ScoringCase) -> tuple[np.ndarray, str]:
    """The scene's expert trajectory: the logged human future when the scene has one (original frames), else
    the PDM-Closed reference (synthetic frames carry no human future)."""
    if case.human_future is not None:
        return np.asarray(case.human_future, dtype=np.float64), "human"
    return reference_poses(case), "reference"


def previous_frame_index(case: ScoringCase, max_offset_s: float) -> int | None:
    """Index in ``case.human_past`` of the frame NAVSIM's two-stage EC would pair with now (0 < dt < max)."""
    for index in range(len(case.human_past) - 1, -1, -1):
        dt = (case.time_us - case.human_past[index].time_us) * 1e-6
        if 0.0 < dt < max_offset_s:
            return index
    return None


def previous_plan(case: ScoringCase, max_offset_s: float) -> tuple[np.ndarray, int] | None:
    """The plan the expert held one frame ago, as (8, 3) poses in the *previous* ego frame plus that frame's
    index in ``human_past``; None when the past has no frame 0 < dt < ``max_offset_s`` back.

    It reaches the current ego pose at the current time and then follows the scene's anchor (human future or
    PDM reference); only whole 0.5 s offsets are supported, as NAVSIM's frames are.
    """
    index = previous_frame_index(case, max_offset_s)
    if index is None:
        return None
    prev = case.human_past[index]
    offset = int(round((case.time_us - prev.time_us) * 1e-6 / TRAJECTORY_INTERVAL_S))
    if offset != 1:
        return None
    anchor, _ = anchor_poses(case)
    current = np.concatenate([np.zeros((1, 3)), anchor[: NUM_TRAJECTORY_POSES - 1]], axis=0)
    global_poses = to_global(case.ego.rear_axle, current)
    return to_ego_frame(prev.rear_axle, global_poses), index
