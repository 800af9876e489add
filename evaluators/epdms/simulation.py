"""Ego simulation of NAVSIM v2's EPDMS: 10 Hz resampling, batch LQR tracker and kinematic bicycle.

NAVSIM (commit 0a380a9) never scores a trajectory as submitted. ``pdm_score`` turns the 8 ego-frame poses
(t = 0.5 ... 4.0 s) into global rear-axle poses, prepends the current ego state, wraps them in nuPlan's
``InterpolatedTrajectory``, resamples that at 10 Hz and lets ``PDMSimulator`` track the 41 poses with an LQR
controller driving a kinematic bicycle model.  The PDM-Closed reference and the human trajectory go through
the same pipeline.  This module reproduces that arithmetic on plain arrays, batched over proposals:

``proposal_poses_to_global(ego_rear_axle, poses_ego)``
    ego rear-axle pose (x, y, heading) (3,) and ego-frame poses (N, K, 3) -> (N, K, 3) global poses.
``sample_poses_10hz(ego_rear_axle, time_us, poses_global)``
    global poses at t0 + 0.5 s * (k+1) (N, K, 3), current time [us] -> (N, 41, 3) poses at NAVSIM's 10 Hz
    sample stamps (the ego pose at ``time_us`` is knot 0).
``sample_reference_10hz(states, interval_s, time_us)``
    PDM-Closed reference rows (M, >=3), global rear axle at ``time_us + k*interval_s`` -> (41, 3).
``simulate(initial_state, reference_poses, config)``
    current ego state (11,) in ``StateIndex`` order (x, y, heading, vx, vy, ax, ay, steering, steering_rate,
    yaw_rate, yaw_accel; rear axle, velocities/accelerations in the ego frame, i.e. a scoring case's ``ego``
    fields), (N, T, 3) 10 Hz references -> (N, T, 11) simulated states, row 0 = ``initial_state``.

Quirks reproduced on purpose, because the scorer must match NAVSIM to 1e-6:

* Time stamps are integer microseconds made by truncating floats: knots at ``int((t0_s + 0.5*(k+1))*1e6)`` and
  samples at ``int((t0_s + 0.1*i)*1e6)`` with ``t0_s = time_us*1e-6``.  With epoch-sized stamps ``t0_s`` is not
  exact, so many stamps land 1 us early (sample 0 is then clipped back to the start of the trajectory).  At
  10 m/s one microsecond is 1e-5 m, larger than the tolerance, so the truncation cannot be idealised away.
* Global headings come out of ``atan2`` (wrapped to (-pi, pi]), are then ``np.unwrap``-ed starting from the
  *raw* ego heading, interpolated linearly in time and wrapped to [-pi, pi) again.
* The speed fit's "jerk" penalty is mostly an acceleration penalty, because NAVSIM's banded difference
  matrix is built wrongly (see ``_speed_fit_operator``).  This changes the simulated states by centimetres.
* The bicycle integrates with ``dt = 100000 us * 1e-6 = 0.09999999999999999 s`` while the LQR discretises with
  exactly 0.1 s (two different code paths in NAVSIM).
* The tracker derives speed and curvature from the poses alone (regularised least squares), ignoring the
  velocities NAVSIM attaches to the interpolated states; the initial ego state contributes vx, ax and whatever
  steering/yaw values it carries (NAVSIM's logs give 0).  The tracking error is taken against the reference
  pose with the same time index, not the closest one.
* The bicycle's heading rate uses the *previous* steering angle and speed (explicit Euler on the low-pass
  filtered commands), and the output acceleration is the filtered command, not the LQR command.

The least-squares fits are solved in a reparametrisation that is better conditioned than NAVSIM's
(``pinv`` of the normal matrices over [v0, a_0..] and [kappa0, kappa_rate_0..]): written in the speeds the
speed fit has one constant normal matrix shared by every proposal, written in the curvatures the curvature
fit is tridiagonal.  The minimiser is the same; only round-off differs (~1e-11 on the simulated states).

The per-proposal work runs in ``numba`` kernels, row by row, so a row's result never depends on the other rows
of the batch.  Numba's first call in a process costs ~0.2-0.3 s (runtime start-up + loading the on-disk cache).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np
import numpy.typing as npt

__all__ = [
    "PACIFICA_WHEEL_BASE",
    "STATE_SIZE",
    "TrackerConfig",
    "proposal_poses_to_global",
    "sample_poses_10hz",
    "sample_reference_10hz",
    "simulate",
]

FloatArray = npt.NDArray[np.float64]

#: nuPlan ``get_pacifica_parameters().wheel_base`` [m]
PACIFICA_WHEEL_BASE = 3.089
#: length of a state row (NAVSIM ``StateIndex``: x, y, heading, vx, vy, ax, ay, steering, steering_rate,
#: yaw_rate, yaw_accel)
STATE_SIZE = 11

# StateIndex positions used below
_X, _Y, _H, _VX, _VY, _AX, _AY, _STEER, _STEER_RATE, _YAW_RATE, _YAW_ACC = range(STATE_SIZE)


@dataclass(frozen=True)
class TrackerConfig:
    """Constants of NAVSIM's ``BatchLQRTracker`` + ``BatchKinematicBicycleModel`` (defaults = NAVSIM's)."""

    # --- bicycle model -------------------------------------------------------------------------------------
    wheel_base: float = PACIFICA_WHEEL_BASE  # [m] motion model; NAVSIM takes it from the ego state's vehicle
    accel_time_constant: float = 0.2  # [s] first-order low-pass on the acceleration command
    steering_time_constant: float = 0.05  # [s] first-order low-pass on the steering angle command
    max_steering_angle: float = math.pi / 3  # [rad] |steering| clip after integration
    step_us: int = 100_000  # [us] simulation step; the bicycle integrates with step_us * 1e-6 s

    # --- LQR tracker ---------------------------------------------------------------------------------------
    tracker_wheel_base: float = PACIFICA_WHEEL_BASE  # [m] NAVSIM's tracker keeps Pacifica hard-wired
    discretization_s: float = 0.1  # [s] LQR / profile-fit time step (proposal_sampling.interval_length)
    horizon: int = 10  # [steps] LQR look-ahead
    q_longitudinal: float = 10.0  # [1/(m/s)^2] weight on the velocity error at the horizon
    r_longitudinal: float = 1.0  # [1/(m/s^2)^2] weight on the acceleration command
    q_lateral: tuple[float, float, float] = field(default=(1.0, 10.0, 0.0))  # lateral [m], heading, steer [rad]
    r_lateral: float = 1.0  # [1/(rad/s)^2] weight on the steering-rate command
    # [-] speed fit regularisation; named for acceleration differences, but NAVSIM's matrix makes it act
    # mostly on the accelerations themselves (see _speed_fit_operator)
    jerk_penalty: float = 1e-4
    curvature_rate_penalty: float = 1e-2  # [-] curvature fit: weight on squared curvature rates
    initial_curvature_penalty: float = 1e-10  # [-] curvature fit: keeps it regular when the speed is ~0
    stopping_velocity: float = 0.2  # [m/s] below this (reference and ego) the P stop controller takes over
    stopping_gain: float = 0.5  # [1/s] P gain of the stop controller

    def __post_init__(self) -> None:
        if self.horizon < 2:
            raise ValueError("horizon must be > 1 (steering rate has no effect otherwise)")
        if self.discretization_s <= 0 or self.step_us <= 0:
            raise ValueError("time steps must be positive")
        if min(self.jerk_penalty, self.curvature_rate_penalty, self.initial_curvature_penalty) <= 0:
            raise ValueError("fit penalties must be positive")
        if len(self.q_lateral) != 3:
            raise ValueError("q_lateral needs 3 weights")


# ------------------------------------------------------------------------------------------------------------
# Poses and resampling
# ------------------------------------------------------------------------------------------------------------


def proposal_poses_to_global(ego_rear_axle: npt.ArrayLike, poses_ego: npt.ArrayLike) -> FloatArray:
    """Ego-frame rear-axle poses (N, K, 3) -> global (N, K, 3), like nuPlan's ``relative_to_absolute_poses``.

    The heading is recovered with ``atan2`` of the composed rotation, as nuPlan does, so it is wrapped to
    (-pi, pi] whatever the ego heading is; the later ``unwrap`` depends on that.
    """
    ego = np.asarray(ego_rear_axle, dtype=np.float64)
    rel = np.ascontiguousarray(poses_ego, dtype=np.float64)
    out = np.empty(rel.shape[:-1] + (3,), dtype=np.float64)
    sin_sum = np.empty(rel.shape[:-1])
    cos_sum = np.empty(rel.shape[:-1])
    _compose_kernel(ego, rel.reshape(-1, 3), out.reshape(-1, 3), sin_sum.reshape(-1), cos_sum.reshape(-1))
    # atan2 stays NumPy's: its SIMD atan2 and libm's (numba's) differ in the last bit for ~10 % of inputs.
    out[..., 2] = np.arctan2(sin_sum, cos_sum)
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _compose_kernel(ego: FloatArray, rel: FloatArray, out: FloatArray, sin_sum: FloatArray,
                    cos_sum: FloatArray) -> None:
    # NumPy's operation order (c0*x - s0*y) + ego_x; numba's cos/sin equal NumPy's bit for bit.
    c0, s0 = math.cos(ego[2]), math.sin(ego[2])
    for i in range(rel.shape[0]):
        x, y, h = rel[i, 0], rel[i, 1], rel[i, 2]
        ch, sh = np.cos(h), np.sin(h)
        out[i, 0] = c0 * x - s0 * y + ego[0]
        out[i, 1] = s0 * x + c0 * y + ego[1]
        sin_sum[i] = s0 * ch + c0 * sh
        cos_sum[i] = c0 * ch - s0 * sh


@functools.lru_cache(maxsize=256)
def _sample_stamps_us(time_us: int, num_samples: int, sample_interval_s: float) -> npt.NDArray[np.int64]:
    # NAVSIM: np.arange(0, horizon + interval, interval) + t0_s, then int(t * 1e6) (truncation, not rounding).
    # Cached (read-only): every proposal of a frame asks for the same stamps.
    horizon_s = (num_samples - 1) * sample_interval_s
    offsets = np.arange(0.0, horizon_s + sample_interval_s, sample_interval_s)[:num_samples]
    t0_s = int(time_us) * 1e-6
    stamps = np.array([int(t * 1e6) for t in (offsets + t0_s)], dtype=np.int64)
    stamps.flags.writeable = False
    return stamps


@functools.lru_cache(maxsize=256)
def _proposal_knots_us(time_us: int, num_poses: int, pose_interval_s: float) -> npt.NDArray[np.int64]:
    """The ego's stamp then the proposal poses' (nuPlan ``_get_fixed_timesteps``: arange(0, horizon, interval)
    + interval + t0_s, stamped with int(t * 1e6)); cached read-only, as above."""
    t0_s = int(time_us) * 1e-6
    offsets = np.arange(num_poses, dtype=np.float64) * pose_interval_s + pose_interval_s
    knots = np.empty(num_poses + 1, dtype=np.int64)
    knots[0] = int(time_us)
    knots[1:] = [int(t * 1e6) for t in (offsets + t0_s)]
    if np.any(np.diff(knots) <= 0):
        raise ValueError("pose time stamps must increase")
    knots.flags.writeable = False
    return knots


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _interpolate_kernel(
    poses: FloatArray, lo: npt.NDArray[np.int64], offset: FloatArray, span: FloatArray, out: FloatArray
) -> None:
    n, k_len = poses.shape[0], poses.shape[1]
    two_pi = 2.0 * math.pi
    unwrapped = np.empty(k_len)
    for b in range(n):
        p = poses[b]
        # np.unwrap (period 2 pi, discont pi), accumulating the correction like its cumsum
        unwrapped[0] = p[0, 2]
        correction = 0.0
        for i in range(1, k_len):
            dd = p[i, 2] - p[i - 1, 2]
            ddmod = (dd + math.pi) % two_pi - math.pi
            if ddmod == -math.pi and dd > 0:
                ddmod = math.pi
            if abs(dd) >= math.pi:
                correction += ddmod - dd
            unwrapped[i] = p[i, 2] + correction
        for s_idx in range(lo.shape[0]):
            i0 = lo[s_idx]
            # scipy interp1d arithmetic: (y_hi - y_lo) / (t_hi - t_lo) * (t - t_lo) + y_lo
            out[b, s_idx, 0] = (p[i0 + 1, 0] - p[i0, 0]) / span[s_idx] * offset[s_idx] + p[i0, 0]
            out[b, s_idx, 1] = (p[i0 + 1, 1] - p[i0, 1]) / span[s_idx] * offset[s_idx] + p[i0, 1]
            h = (unwrapped[i0 + 1] - unwrapped[i0]) / span[s_idx] * offset[s_idx] + unwrapped[i0]
            # nuPlan principal_value: wrap to [-pi, pi)
            out[b, s_idx, 2] = (h + math.pi) % two_pi - math.pi


def _interpolation_grid(
    knots_us: npt.NDArray[np.int64], stamps_us: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
    """Per sample stamp: the knot segment it falls in, its offset into it and the segment's length [us]."""
    # nuPlan's InterpolatedTrajectory clips requests to its own span
    stamps = np.clip(stamps_us, knots_us[0], knots_us[-1]).astype(np.float64)
    kt = knots_us.astype(np.float64)
    # scipy interp1d: left-sided search, segment [i-1, i]
    hi = np.clip(np.searchsorted(kt, stamps, side="left"), 1, len(kt) - 1)
    lo = (hi - 1).astype(np.int64)
    return lo, stamps - kt[lo], kt[hi] - kt[lo]


@functools.lru_cache(maxsize=256)
def _proposal_grid(
    time_us: int, num_poses: int, pose_interval_s: float, num_samples: int, sample_interval_s: float
) -> tuple[npt.NDArray[np.int64], FloatArray, FloatArray]:
    """``_interpolation_grid`` of a proposal's knots and the 10 Hz stamps; the same for every proposal of a
    frame, so cached (shared: only ``_interpolate_kernel`` reads it, which never writes to it; left writeable
    so numba compiles one kernel signature, not a second for read-only arrays)."""
    return _interpolation_grid(_proposal_knots_us(time_us, num_poses, pose_interval_s),
                               _sample_stamps_us(time_us, num_samples, sample_interval_s))


def _interpolate_poses(
    grid: tuple[npt.NDArray[np.int64], FloatArray, FloatArray], poses: FloatArray
) -> FloatArray:
    """Linear interpolation in time of (N, K, 3) poses on ``grid``, heading unwrapped first and wrapped after."""
    lo, offset, span = grid
    out = np.empty((poses.shape[0], len(lo), 3), dtype=np.float64)
    _interpolate_kernel(np.ascontiguousarray(poses), lo, offset, span, out)
    return out


def sample_poses_10hz(
    ego_rear_axle: npt.ArrayLike,
    time_us: int,
    poses_global: npt.ArrayLike,
    pose_interval_s: float = 0.5,
    num_samples: int = 41,
    sample_interval_s: float = 0.1,
) -> FloatArray:
    """NAVSIM's ``transform_trajectory`` + ``get_trajectory_as_array`` for (N, K, 3) global poses.

    ``poses_global[:, k]`` is the pose at ``t0 + pose_interval_s*(k+1)``; the ego pose (at ``time_us``) is
    prepended as knot 0.  Returns (N, num_samples, 3) rear-axle poses at the 10 Hz sample stamps.
    """
    poses = np.asarray(poses_global, dtype=np.float64)
    n, k = poses.shape[0], poses.shape[1]
    full = np.empty((n, k + 1, 3), dtype=np.float64)
    full[:, 0] = ego_rear_axle
    full[:, 1:] = poses
    grid = _proposal_grid(int(time_us), k, float(pose_interval_s), num_samples, float(sample_interval_s))
    return _interpolate_poses(grid, full)


def sample_reference_10hz(
    states: npt.ArrayLike,
    interval_s: float,
    time_us: int,
    num_samples: int = 41,
    sample_interval_s: float = 0.1,
) -> FloatArray:
    """PDM reference rows (M, >=3), global rear axle at ``time_us + k*interval_s`` -> (num_samples, 3).

    The knot stamps are ``time_us + round(k*interval_s*1e6)`` (exact integers, as the PDM planner's time
    points are); the samples get the same truncated stamps as proposals.  Only x, y, heading are used.
    """
    ref = np.asarray(states, dtype=np.float64)[:, :3]
    knots = int(time_us) + np.rint(np.arange(ref.shape[0]) * (interval_s * 1e6)).astype(np.int64)
    stamps = _sample_stamps_us(int(time_us), num_samples, float(sample_interval_s))
    return _interpolate_poses(_interpolation_grid(knots, stamps), ref[None])[0]


# ------------------------------------------------------------------------------------------------------------
# Simulation
# ------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _speed_fit_operator(num_displacements: int, penalty_weight: float) -> FloatArray:
    """Inverse of the normal matrix of NAVSIM's speed fit, written in the speeds v_0..v_{M-1}.

    NAVSIM fits [v0, a_0..a_{M-2}] to the displacements projected on the pose headings.  In the speeds
    themselves the data term is sum (p_j/dt - v_j)^2 (|heading unit vector| = 1), so the matrix is the same
    for every proposal and ``penalty_weight`` = jerk_penalty / dt^4.

    The penalty is *not* the jerk penalty NAVSIM documents: its ``_make_banded_difference_matrix`` writes
    ``+eye`` into columns 1: and then ``-eye`` into columns :-1, which zeroes every +1 except the last row's.
    The (M-2) x (M-1) operator on the accelerations is therefore -I with one +1 in the bottom-right corner:
    it penalises a_0..a_{M-4} themselves (i.e. first differences of v) plus one true jerk term
    a_{M-2} - a_{M-3}.  nuPlan's original builds a proper difference matrix; the golden results only match
    NAVSIM's version.
    """
    m = num_displacements
    accel_penalty = np.zeros((m - 2, m - 1))
    accel_penalty[np.arange(m - 2), np.arange(m - 2)] = -1.0
    accel_penalty[m - 3, m - 2] = 1.0
    first_diff = np.zeros((m - 1, m))  # a_i * dt = v_{i+1} - v_i
    first_diff[np.arange(m - 1), np.arange(m - 1)] = -1.0
    first_diff[np.arange(m - 1), np.arange(1, m)] = 1.0
    op = accel_penalty @ first_diff
    normal = np.eye(m) + penalty_weight * (op.T @ op)
    return np.ascontiguousarray(np.linalg.inv(normal))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _wrap_pi(angle: float) -> float:
    # NAVSIM's normalize_angle is atan2(sin, cos); inside (-pi, pi) that is the identity up to one ulp, and
    # skipping the three transcendental calls there is most of the kernel's speed.
    if -math.pi < angle < math.pi:
        return angle
    return math.atan2(math.sin(angle), math.cos(angle))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _simulate_kernel(
    init: FloatArray,
    ref: FloatArray,
    speed_op: FloatArray,
    out: FloatArray,
    lqr_dt: float,
    sim_dt: float,
    horizon: int,
    q_lon: float,
    r_lon: float,
    q_lat0: float,
    q_lat1: float,
    q_lat2: float,
    r_lat: float,
    curv_weight: float,
    curv0_penalty: float,
    stop_velocity: float,
    stop_gain: float,
    tracker_wheel_base: float,
    wheel_base: float,
    accel_tau: float,
    steer_tau: float,
    max_steer: float,
) -> None:
    n, t_len = ref.shape[0], ref.shape[1]
    m = t_len - 1  # displacements = length of the fitted speed / curvature profiles
    ref_cos = np.empty(m)
    ref_sin = np.empty(m)
    proj = np.empty(m)
    speed = np.empty(m)
    diag = np.empty(m)
    rhs = np.empty(m)
    cprime = np.empty(m)
    curv = np.empty(m)
    curv_h = np.empty(horizon)
    two_pi = 2.0 * math.pi
    lon_b = horizon * lqr_dt
    lon_gain = -1.0 / (lon_b * q_lon * lon_b + r_lon) * lon_b * q_lon
    accel_blend = sim_dt / (sim_dt + accel_tau)
    steer_blend = sim_dt / (sim_dt + steer_tau)

    for b in range(n):
        r = ref[b]
        # ---- speed profile from the displacements projected on the heading at their start ----
        # (the same cos/sin of reference pose t are reused by the tracker at step t)
        for j in range(m):
            ref_cos[j] = math.cos(r[j, 2])
            ref_sin[j] = math.sin(r[j, 2])
            proj[j] = ((r[j + 1, 0] - r[j, 0]) * ref_cos[j] + (r[j + 1, 1] - r[j, 1]) * ref_sin[j]) / lqr_dt
        for i in range(m):
            acc = 0.0
            for j in range(m):
                acc += speed_op[i, j] * proj[j]
            speed[i] = acc
        # ---- curvature profile: min sum (dh_j - w_j k_j)^2 + c sum (k_{j+1}-k_j)^2 + eps k_0^2 ----
        # NAVSIM's unknowns are k_0 and the rates (k_{j+1}-k_j)/dt with weight curvature_rate_penalty, so
        # c = penalty / dt^2; w_j = v_j dt.  In k the normal matrix is tridiagonal and well conditioned.
        for j in range(m):
            w = speed[j] * lqr_dt
            dh = _wrap_pi(r[j + 1, 2] - r[j, 2])
            deg = 2.0 if 0 < j < m - 1 else 1.0
            diag[j] = w * w + curv_weight * deg
            rhs[j] = w * dh
        diag[0] += curv0_penalty
        # Thomas algorithm (off-diagonals all -c); the matrix is SPD so no pivoting is needed
        off = -curv_weight
        cprime[0] = off / diag[0]
        rhs[0] = rhs[0] / diag[0]
        for j in range(1, m):
            denom = diag[j] - off * cprime[j - 1]
            cprime[j] = off / denom
            rhs[j] = (rhs[j] - off * rhs[j - 1]) / denom
        curv[m - 1] = rhs[m - 1]
        for j in range(m - 2, -1, -1):
            curv[j] = rhs[j] - cprime[j] * curv[j + 1]

        # ---- closed loop ----
        s = out[b, 0]
        for k in range(STATE_SIZE):
            s[k] = init[k]
        tan_steer = math.tan(init[_STEER])
        for t in range(m):
            cur = out[b, t]
            nxt = out[b, t + 1]
            v0 = cur[_VX]
            steer = cur[_STEER]
            ref_idx = min(t + horizon, m - 1)
            v_ref = speed[ref_idx]
            if v_ref <= stop_velocity and v0 <= stop_velocity:
                accel_cmd = -stop_gain * (v0 - v_ref)
                steer_rate_cmd = 0.0
            else:
                accel_cmd = lon_gain * (v0 - v_ref)
                # curvature over the horizon, held at the last fitted value past the end
                for k in range(horizon):
                    curv_h[k] = curv[t + k] if t + k < ref_idx else curv[ref_idx]
                # initial tracking error in the frame of reference pose t (time-indexed, not projected)
                ex = cur[_X] - r[t, 0]
                ey = cur[_Y] - r[t, 1]
                e_lat = -ex * ref_sin[t] + ey * ref_cos[t]
                e_head = _wrap_pi(cur[_H] - r[t, 2])
                e_steer = steer
                # Propagate the zero-input error and the input column through the linearised lateral
                # dynamics (speed ramp from the longitudinal command); equals NAVSIM's A @ x0 + g and B.
                b_lat, b_head, b_steer = 0.0, 0.0, 0.0
                vk = v0
                for k in range(horizon):
                    if k > 0:
                        vk += accel_cmd * lqr_dt
                    a01 = vk * lqr_dt
                    a12 = vk * lqr_dt / tracker_wheel_base
                    e_lat = e_lat + a01 * e_head
                    e_head = e_head + a12 * e_steer - vk * curv_h[k] * lqr_dt
                    b_lat = b_lat + a01 * b_head
                    b_head = b_head + a12 * b_steer
                    b_steer = b_steer + lqr_dt
                e_head = _wrap_pi(e_head)
                e_steer = _wrap_pi(e_steer)
                gram = b_lat * q_lat0 * b_lat + b_head * q_lat1 * b_head + b_steer * q_lat2 * b_steer + r_lat
                tail = b_lat * q_lat0 * e_lat + b_head * q_lat1 * e_head + b_steer * q_lat2 * e_steer
                steer_rate_cmd = -1.0 / gram * tail

            # ---- kinematic bicycle: low-pass the commands, then explicit Euler from the old state ----
            ax_old = cur[_AX]
            ideal_steer = sim_dt * steer_rate_cmd + steer
            ax_new = accel_blend * (accel_cmd - ax_old) + ax_old
            steer_lp = steer_blend * (ideal_steer - steer) + steer
            steer_rate = (steer_lp - steer) / sim_dt
            heading = cur[_H]
            nxt[_X] = cur[_X] + v0 * math.cos(heading) * sim_dt
            nxt[_Y] = cur[_Y] + v0 * math.sin(heading) * sim_dt
            # nuPlan principal_value: wrap to [-pi, pi)
            nxt[_H] = ((heading + v0 * tan_steer / wheel_base * sim_dt) + math.pi) % two_pi - math.pi
            vx_new = v0 + ax_new * sim_dt
            nxt[_VX] = vx_new
            nxt[_VY] = 0.0
            steer_new = min(max(steer + steer_rate * sim_dt, -max_steer), max_steer)
            nxt[_STEER] = steer_new
            tan_steer = math.tan(steer_new)
            yaw_rate = vx_new * tan_steer / wheel_base
            nxt[_YAW_RATE] = yaw_rate
            nxt[_AX] = ax_new
            nxt[_AY] = 0.0
            nxt[_YAW_ACC] = (yaw_rate - cur[_YAW_RATE]) / sim_dt
            nxt[_STEER_RATE] = steer_rate


def simulate(
    initial_state: npt.ArrayLike,
    reference_poses: npt.ArrayLike,
    config: TrackerConfig | None = None,
) -> FloatArray:
    """Track (N, T, 3) reference rear-axle poses (10 Hz, T >= 3) from ``initial_state`` (11,).

    Returns (N, T, 11) states in ``StateIndex`` order; row 0 is ``initial_state`` unchanged.  Each row is
    simulated independently of the others.
    """
    cfg = TrackerConfig() if config is None else config
    init = np.ascontiguousarray(initial_state, dtype=np.float64)
    ref = np.ascontiguousarray(reference_poses, dtype=np.float64)
    if init.shape != (STATE_SIZE,):
        raise ValueError(f"initial_state must have shape ({STATE_SIZE},), got {init.shape}")
    if ref.ndim != 3 or ref.shape[2] < 3 or ref.shape[1] < 4:
        raise ValueError(f"reference_poses must have shape (N, T>=4, 3), got {ref.shape}")
    ref = np.ascontiguousarray(ref[..., :3])
    n, t_len = ref.shape[0], ref.shape[1]
    out = np.zeros((n, t_len, STATE_SIZE), dtype=np.float64)
    if n == 0:
        return out
    dt = cfg.discretization_s
    speed_op = _speed_fit_operator(t_len - 1, cfg.jerk_penalty / dt**4)
    _simulate_kernel(
        init,
        ref,
        speed_op,
        out,
        dt,
        cfg.step_us * 1e-6,
        cfg.horizon,
        cfg.q_longitudinal,
        cfg.r_longitudinal,
        float(cfg.q_lateral[0]),
        float(cfg.q_lateral[1]),
        float(cfg.q_lateral[2]),
        cfg.r_lateral,
        cfg.curvature_rate_penalty / dt**2,
        cfg.initial_curvature_penalty,
        cfg.stopping_velocity,
        cfg.stopping_gain,
        cfg.tracker_wheel_base,
        cfg.wheel_base,
        cfg.accel_time_constant,
        cfg.steering_time_constant,
        cfg.max_steering_angle,
    )
    return out
