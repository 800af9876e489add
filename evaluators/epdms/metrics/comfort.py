"""History comfort (HC) and two-frame extended comfort (EC), with NAVSIM's filter arithmetic.

Signals are Savitzky-Golay filtered along time (scipy, ``mode='interp'``) and rounded to 8 decimals before the
bounds are applied, exactly as ``pdm_comfort_metrics`` does; the sampling step is the mean of the time
differences, and all states are treated as equally spaced even where the history skips a sample.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numba import njit
from scipy.signal import savgol_filter

from evaluators.epdms.config import ComfortBounds, ExtendedComfortThresholds
from irlvla_bench.types import StateIndex


@lru_cache(maxsize=64)
def _savgol_operator(length: int, window: int, poly: int, deriv: int, delta: float) -> np.ndarray:
    """scipy's Savitzky-Golay filter (mode 'interp') as the (T, T) matrix it is: y = x @ M.

    Filtering thousands of rows through one matrix product is far cheaper than scipy's per-call edge fits;
    the results agree to ~1e-15, far below the 8-decimal rounding NAVSIM applies next.
    """
    return savgol_filter(np.eye(length), polyorder=poly, window_length=window, deriv=deriv, delta=delta, axis=-1)


def _savgol(values: np.ndarray, window: int, poly: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    window = min(window, values.shape[-1])
    return values @ _savgol_operator(values.shape[-1], window, poly, deriv, float(delta))


def _acceleration(states: np.ndarray, coordinate: str, rear_axle_to_center: float, bounds: ComfortBounds):
    if coordinate == "magnitude":
        acc = np.hypot(states[..., StateIndex.ACCELERATION_X], states[..., StateIndex.ACCELERATION_Y])
    elif coordinate == "x":
        # Rigid-body shift of the rear-axle acceleration to the box centre, term by term as nuPlan adds them.
        w = states[..., StateIndex.ANGULAR_VELOCITY]
        alpha = states[..., StateIndex.ANGULAR_ACCELERATION]
        acc = states[..., StateIndex.ACCELERATION_X] + rear_axle_to_center * w**2 + rear_axle_to_center * alpha
    else:  # "y": the displacement has no lateral part
        w = states[..., StateIndex.ANGULAR_VELOCITY]
        alpha = states[..., StateIndex.ANGULAR_ACCELERATION]
        acc = states[..., StateIndex.ACCELERATION_Y] + 0.0 * w**2 + 0.0 * alpha
    acc = _savgol(acc, bounds.accel_window, bounds.poly_order)
    return np.round(acc, bounds.decimals)


def time_step(time_s: np.ndarray) -> float:
    """The filters' sampling step: the mean of the time differences, as NAVSIM computes it."""
    return float(np.diff(time_s).mean())


def _jerk(states, coordinate, time_s, rear_axle_to_center, bounds: ComfortBounds):
    acc = _acceleration(states, coordinate, rear_axle_to_center, bounds)
    jerk = _savgol(acc, bounds.jerk_window, bounds.poly_order, deriv=1, delta=time_step(time_s))
    return np.round(jerk, bounds.decimals)


def _phase_unwrap(headings: np.ndarray) -> np.ndarray:
    two_pi = 2.0 * np.pi
    adjustments = np.zeros_like(headings)
    adjustments[..., 1:] = np.cumsum(np.round(np.diff(headings, axis=-1) / two_pi), axis=-1)
    return headings - two_pi * adjustments


def _yaw_derivative(states, time_s, deriv: int, poly: int, bounds: ComfortBounds):
    heading = _phase_unwrap(states[..., StateIndex.HEADING])
    rate = _savgol(heading, bounds.yaw_window, poly, deriv=deriv, delta=time_step(time_s))
    return np.round(rate, bounds.decimals)


def _within(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.all((values > low) & (values < high), axis=-1)


@njit(cache=True, error_model="numpy")
def _filtered(signal: np.ndarray, operator: np.ndarray, span: np.ndarray, scale: float) -> np.ndarray:
    """``round(signal @ operator, decimals)`` for one row, with numpy's rounding (x * 10^d, rint, / 10^d).
    ``span[j]`` = the rows [first, last) where column j of the operator is nonzero: a Savitzky-Golay output
    depends on one window of inputs, so the sum skips only zero terms (and keeps its order)."""
    n = signal.shape[0]
    out = np.empty(n)
    for j in range(n):
        total = 0.0
        for i in range(span[j, 0], span[j, 1]):
            total += signal[i] * operator[i, j]
        out[j] = np.rint(total * scale) / scale
    return out


@njit(cache=True, error_model="numpy")
def _all_within(values: np.ndarray, low: float, high: float) -> bool:
    for v in values:
        if not (v > low and v < high):
            return False
    return True


@njit(cache=True, error_model="numpy")
def _comfort_flags_kernel(states, acc_op, jerk_op, yaw_rate_op, yaw_accel_op, spans, rear_axle_to_center, scale,
                          limits):
    """The six HC flags of (R, T, 11) states in one pass per row; ``limits`` (6, 2) open intervals in the order
    of ``comfort_flags``, ``spans`` (4, T, 2) the operators' nonzero rows per column (see ``_filtered``). Same
    arithmetic as the NumPy path (term order included); the filter sums run in loop order, so values may differ
    from BLAS in the last bit, far below the 8-decimal rounding that follows."""
    rows, steps = states.shape[0], states.shape[1]
    out = np.empty((rows, 6), dtype=np.bool_)
    two_pi = 2.0 * np.pi
    for r in range(rows):
        acc_x = np.empty(steps)
        acc_y = np.empty(steps)
        acc_mag = np.empty(steps)
        heading = np.empty(steps)
        adjustment = 0.0
        for t in range(steps):
            w = states[r, t, 9]
            alpha = states[r, t, 10]
            ax = states[r, t, 5]
            ay = states[r, t, 6]
            acc_x[t] = ax + rear_axle_to_center * w**2 + rear_axle_to_center * alpha
            acc_y[t] = ay + 0.0 * w**2 + 0.0 * alpha
            acc_mag[t] = np.hypot(ax, ay)
            if t > 0:
                adjustment += np.rint((states[r, t, 2] - states[r, t - 1, 2]) / two_pi)
            heading[t] = states[r, t, 2] - two_pi * adjustment
        acc_span, jerk_span, yaw_rate_span, yaw_accel_span = spans[0], spans[1], spans[2], spans[3]
        lon = _filtered(acc_x, acc_op, acc_span, scale)
        out[r, 0] = _all_within(lon, limits[0, 0], limits[0, 1])
        out[r, 1] = _all_within(_filtered(acc_y, acc_op, acc_span, scale), limits[1, 0], limits[1, 1])
        out[r, 2] = _all_within(_filtered(_filtered(acc_mag, acc_op, acc_span, scale), jerk_op, jerk_span, scale),
                                limits[2, 0], limits[2, 1])
        out[r, 3] = _all_within(_filtered(lon, jerk_op, jerk_span, scale), limits[3, 0], limits[3, 1])
        out[r, 4] = _all_within(_filtered(heading, yaw_accel_op, yaw_accel_span, scale), limits[4, 0], limits[4, 1])
        out[r, 5] = _all_within(_filtered(heading, yaw_rate_op, yaw_rate_span, scale), limits[5, 0], limits[5, 1])
    return out


def comfort_flags(states: np.ndarray, time_step_s: float, rear_axle_to_center: float,
                  bounds: ComfortBounds) -> np.ndarray:
    """(R, T, 11) states sampled every ``time_step_s`` (``time_step`` of their stamps) -> (R, 6) within-bound
    flags (lon accel, lat accel, jerk, lon jerk, yaw accel, yaw rate).

    One numba pass: per proposal, HC was a chain of ~25 small NumPy calls whose overhead dominated submission
    mode. ``comfort_flags_numpy`` is the NumPy reference it is tested against."""
    acc_op, jerk_op, yaw_rate_op, yaw_accel_op, spans, limits = _kernel_constants(states.shape[1], bounds,
                                                                                  float(time_step_s))
    return _comfort_flags_kernel(np.ascontiguousarray(states, dtype=np.float64), acc_op, jerk_op, yaw_rate_op,
                                 yaw_accel_op, spans, float(rear_axle_to_center), float(10 ** bounds.decimals),
                                 limits)


@lru_cache(maxsize=64)
def _kernel_constants(steps: int, bounds: ComfortBounds, delta: float) -> tuple[np.ndarray, ...]:
    """The four filter operators, their nonzero spans and the (6, 2) bounds of ``_comfort_flags_kernel``; every
    proposal of a frame has the same (cached: rebuilding them was half of HC's time per submission)."""
    b = bounds

    def operator(window: int, poly: int, deriv: int, step: float) -> np.ndarray:
        return _savgol_operator(steps, min(window, steps), poly, deriv, float(step))

    limits = np.array([[b.min_lon_accel, b.max_lon_accel], [-b.max_abs_lat_accel, b.max_abs_lat_accel],
                       [-b.max_abs_mag_jerk, b.max_abs_mag_jerk], [-b.max_abs_lon_jerk, b.max_abs_lon_jerk],
                       [-b.max_abs_yaw_accel, b.max_abs_yaw_accel], [-b.max_abs_yaw_rate, b.max_abs_yaw_rate]])
    operators = (operator(b.accel_window, b.poly_order, 0, 1.0), operator(b.jerk_window, b.poly_order, 1, delta),
                 operator(b.yaw_window, b.poly_order, 1, delta),
                 operator(b.yaw_window, b.yaw_accel_poly_order, 2, delta))
    spans = np.zeros((4, steps, 2), dtype=np.int64)
    for k, op in enumerate(operators):
        for j in range(steps):
            rows = np.flatnonzero(op[:, j])
            if len(rows):
                spans[k, j] = rows[0], rows[-1] + 1
    return operators + (spans, limits)


def comfort_flags_numpy(states: np.ndarray, time_s: np.ndarray, rear_axle_to_center: float,
                        bounds: ComfortBounds) -> np.ndarray:
    """The NumPy formulation of ``comfort_flags`` (NAVSIM's steps one by one), kept as its test reference."""
    b = bounds
    return np.stack(
        [
            _within(_acceleration(states, "x", rear_axle_to_center, b), b.min_lon_accel, b.max_lon_accel),
            _within(_acceleration(states, "y", rear_axle_to_center, b), -b.max_abs_lat_accel, b.max_abs_lat_accel),
            _within(_jerk(states, "magnitude", time_s, rear_axle_to_center, b), -b.max_abs_mag_jerk, b.max_abs_mag_jerk),
            _within(_jerk(states, "x", time_s, rear_axle_to_center, b), -b.max_abs_lon_jerk, b.max_abs_lon_jerk),
            _within(_yaw_derivative(states, time_s, 2, b.yaw_accel_poly_order, b), -b.max_abs_yaw_accel,
                    b.max_abs_yaw_accel),
            _within(_yaw_derivative(states, time_s, 1, b.poly_order, b), -b.max_abs_yaw_rate, b.max_abs_yaw_rate),
        ],
        axis=-1,
    )


def history_comfort(states: np.ndarray, history: np.ndarray | None, interval_s: float, rear_axle_to_center: float,
                    bounds: ComfortBounds) -> np.ndarray:
    """HC: comfort of [human past, simulated states]; 1 for every row when there is no past."""
    if history is None:
        return np.ones(states.shape[0])
    padded = np.concatenate([np.broadcast_to(history, (states.shape[0],) + history.shape), states], axis=1)
    return comfort_flags(padded, _uniform_time_step(padded.shape[1], float(interval_s)), rear_axle_to_center,
                         bounds).all(axis=-1).astype(np.float64)


@lru_cache(maxsize=64)
def _uniform_time_step(steps: int, interval_s: float) -> float:
    """``time_step`` of ``steps`` equally spaced stamps, as NAVSIM computes it (cached: every proposal of a frame
    has the same)."""
    return time_step(np.arange(0, steps).astype(np.float64) * interval_s)


def _rms(values: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(values**2, axis=1))


def extended_comfort(current: np.ndarray, previous: np.ndarray, interval_s: float, overlap_offset: int,
                     rear_axle_to_center: float, bounds: ComfortBounds,
                     thresholds: ExtendedComfortThresholds) -> np.ndarray:
    """EC of (R, 41, 11) current vs previous simulated states: current[:-k] against previous[k:]."""
    now = current[:, :-overlap_offset]
    before = previous[:, overlap_offset:]
    time_s = np.arange(now.shape[1]) * interval_s
    b = bounds
    features = []
    for states in (now, before):
        features.append(
            (
                _acceleration(states, "magnitude", rear_axle_to_center, b),
                _jerk(states, "magnitude", time_s, rear_axle_to_center, b),
                _yaw_derivative(states, time_s, 1, b.poly_order, b),
                _yaw_derivative(states, time_s, 2, b.poly_order, b),
            )
        )
    limits = (thresholds.acceleration, thresholds.jerk, thresholds.yaw_rate, thresholds.yaw_accel)
    ok = np.ones(current.shape[0], dtype=bool)
    for a, p, limit in zip(features[0], features[1], limits):
        ok &= _rms(a - p) <= limit
    return ok.astype(np.float64)
