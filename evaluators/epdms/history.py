"""The human past as NAVSIM feeds it to history comfort (HC).

NAVSIM wraps the logged past in nuPlan's ``InterpolatedTrajectory`` and samples it every 0.1 s from its first
stamp, end excluded, and then drops the last sample as well: with past states at -1.5, -1.0, -0.5, 0.0 s this
gives 14 states at -1.5 .. -0.2 s. States rebuilt by ``EgoState.from_split_state`` carry zero steering rate and
zero angular velocity / acceleration, which the comfort filters then see.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from irlvla_bench.types import STATE_SIZE, EgoState, StateIndex, wrap_angle

HISTORY_INTERVAL_US = 100_000


def interp_linear(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """``scipy.interpolate.interp1d(kind='linear')`` arithmetic, bit for bit (slope * dx + y_lo)."""
    idx = np.clip(np.searchsorted(x, x_new, side="left"), 1, len(x) - 1)
    lo, hi = idx - 1, idx
    slope = (y[hi] - y[lo]) / (x[hi] - x[lo])[:, None]
    return slope * (x_new - x[lo])[:, None] + y[lo]


def history_states(past: Sequence[EgoState]) -> np.ndarray:
    times = np.array([s.time_us for s in past], dtype=np.int64)
    sample_us = np.arange(times[0], times[-1], HISTORY_INTERVAL_US, dtype=np.int64)
    sample_us = np.clip(sample_us, times[0], times[-1])[:-1]
    linear = np.array(
        [[s.rear_axle[0], s.rear_axle[1], *s.velocity, *s.acceleration, s.steering_angle] for s in past],
        dtype=np.float64,
    )
    headings = np.unwrap(np.array([[s.rear_axle[2]] for s in past], dtype=np.float64), axis=0)
    t = times.astype(np.float64)
    t_new = sample_us.astype(np.float64)
    lin = interp_linear(t, linear, t_new)
    heading = wrap_angle(interp_linear(t, headings, t_new)[:, 0])
    states = np.zeros((len(sample_us), STATE_SIZE), dtype=np.float64)
    states[:, StateIndex.X] = lin[:, 0]
    states[:, StateIndex.Y] = lin[:, 1]
    states[:, StateIndex.HEADING] = heading
    states[:, StateIndex.VELOCITY_X : StateIndex.ACCELERATION_Y + 1] = lin[:, 2:6]
    states[:, StateIndex.STEERING_ANGLE] = lin[:, 6]
    return states
