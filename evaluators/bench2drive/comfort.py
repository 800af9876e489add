"""Driving Smoothness ("Comfortness"), efficiency_smoothness_benchmark.py.

Each route log is cut into consecutive 20-step chunks from step 0 (a trailing partial chunk is ignored; a log of
at most 20 steps is judged whole).  A chunk passes when six Savitzky-Golay-smoothed series stay strictly inside
their bounds.  The quirks of the official tool are kept because the published numbers depend on them: only x/y
of the world-frame vectors, the deg/s yaw rate compared with rad/s bounds, a 2*pi "phase unwrap" applied to that
rate per chunk, the "yaw acceleration" being the smoothed rate itself, and jerks differentiated with dt = 0.1 s
from the already-smoothed series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .config import DEFAULT_CONFIG, Bench2DriveConfig
from .errors import MetricUndefined
from .metric_logs import MetricLog


def phase_unwrap(values: np.ndarray) -> np.ndarray:
    """Along the last axis: subtract 2*pi times the running count of round(step / 2*pi) (half to even)."""
    two_pi = 2.0 * np.pi
    adjustments = np.zeros_like(values)
    adjustments[..., 1:] = np.cumsum(np.round(np.diff(values, axis=-1) / two_pi), axis=-1)
    return values - two_pi * adjustments


def chunk_bounds(n_steps: int, config: Bench2DriveConfig = DEFAULT_CONFIG) -> list[tuple[int, int]]:
    size = config.comfort_chunk_steps
    if n_steps <= size:
        return [(0, n_steps)]
    return [(i * size, (i + 1) * size) for i in range(n_steps // size)]


def chunks_pass(acceleration: np.ndarray, angular_velocity: np.ndarray, forward_vector: np.ndarray,
                right_vector: np.ndarray, config: Bench2DriveConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Comfort verdict of C chunks of equal length L; inputs are (C, L, 3), result (C,) bool."""
    length = acceleration.shape[1]
    window = min(config.savgol_window, length)
    order = config.savgol_polyorder
    if not order < window:
        raise ValueError(f"chunk of {length} steps is too short for a degree-{order} Savitzky-Golay fit")
    b = config.comfort
    # Imported here: scipy.signal costs ~1 s to import and the CLI module is loaded by every irlvla-bench command.
    from scipy.signal import savgol_filter

    def smooth(x: np.ndarray) -> np.ndarray:
        return savgol_filter(x, window_length=window, polyorder=order, axis=-1)

    def jerk(x: np.ndarray) -> np.ndarray:
        return savgol_filter(x, window_length=window, polyorder=order, deriv=1, delta=config.jerk_dt, axis=-1)

    acc2 = acceleration[..., :2]
    lon = smooth(np.einsum("cij,cij->ci", acc2, forward_vector[..., :2]))
    lat = smooth(np.einsum("cij,cij->ci", acc2, right_vector[..., :2]))
    mag = smooth(np.hypot(acc2[..., 0], acc2[..., 1]))
    yaw = smooth(phase_unwrap(angular_velocity[..., 2]))  # serves as both "yaw acceleration" and yaw rate
    ok = ((lon > b.min_lon_accel) & (lon < b.max_lon_accel)
          & (np.abs(lat) < b.max_abs_lat_accel)
          & (np.abs(jerk(mag)) < b.max_abs_mag_jerk)
          & (np.abs(jerk(lon)) < b.max_abs_lon_jerk)
          & (np.abs(yaw) < b.max_abs_yaw_accel)
          & (np.abs(yaw) < b.max_abs_yaw_rate))
    return ok.all(axis=-1)


def route_smoothness_many(logs: Sequence[MetricLog | None], config: Bench2DriveConfig = DEFAULT_CONFIG
                          ) -> list[float | None]:
    """Per-route smoothness; None for a missing log or one too short to smooth (<= polyorder steps).

    All chunks of equal length across routes are judged in one vectorised pass.
    """
    groups: dict[int, list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    n_chunks: list[int] = []
    for i, log in enumerate(logs):
        if log is None or min(config.savgol_window, log.n_steps) <= config.savgol_polyorder:
            n_chunks.append(0)
            continue
        bounds = chunk_bounds(log.n_steps, config)
        length = bounds[0][1] - bounds[0][0]
        stop = bounds[-1][1]
        k = len(bounds)
        arrays = [a[:stop].reshape(k, length, 3) for a in
                  (log.acceleration, log.angular_velocity, log.forward_vector, log.right_vector)]
        groups.setdefault(length, []).append((i, *arrays))
        n_chunks.append(k)

    passed = [0] * len(logs)
    for items in groups.values():
        verdicts = chunks_pass(*(np.concatenate([it[j] for it in items]) for j in range(1, 5)), config=config)
        offset = 0
        for i, *arrays in items:
            k = arrays[0].shape[0]
            passed[i] = int(np.count_nonzero(verdicts[offset:offset + k]))
            offset += k
    return [None if n_chunks[i] == 0 else passed[i] / n_chunks[i] for i in range(len(logs))]


def undefined_reason(log: MetricLog | None, config: Bench2DriveConfig = DEFAULT_CONFIG) -> MetricUndefined | None:
    if log is not None and min(config.savgol_window, log.n_steps) <= config.savgol_polyorder:
        return MetricUndefined(
            "smoothness", f"metric log {log.path} has {log.n_steps} step(s); a degree-{config.savgol_polyorder} "
                          "Savitzky-Golay fit needs more",
            f"efficiency_smoothness_benchmark.py: ValueError: {config.savgol_polyorder} < "
            f"{min(config.savgol_window, log.n_steps)} does not hold!")
    return None
