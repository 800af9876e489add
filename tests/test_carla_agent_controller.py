"""The Zoo-style trajectory controller in a kinematic bicycle simulation, and its PID building block."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.carla.controller import PID, ControllerConfig, PIDGains, TrajectoryController, to_controller_frame

DT = 0.05  # s, CARLA leaderboard tick
WHEELBASE = 2.9  # m
MAX_WHEEL_ANGLE = 0.61  # rad at |steer| = 1 (toy vehicle)
RADIUS = 25.0  # m, curved reference


def _path(kind: str, s: np.ndarray) -> np.ndarray:
    """Reference path points (right-handed world frame) at arc lengths s."""
    s = np.asarray(s, dtype=float)
    if kind == "straight":
        return np.stack([s, np.zeros_like(s)], axis=-1)
    ang = s / RADIUS  # left turn, centre (0, RADIUS)
    return np.stack([RADIUS * np.sin(ang), RADIUS - RADIUS * np.cos(ang)], axis=-1)


def _to_ego(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    x, y, h = pose
    d = points - np.array([x, y])
    return np.stack([d[..., 0] * math.cos(h) + d[..., 1] * math.sin(h),
                     -d[..., 0] * math.sin(h) + d[..., 1] * math.cos(h)], axis=-1)


def simulate(kind: str, v_ref: float, seconds: float, y0: float = 0.0, steer_sign: float = 1.0):
    """A reference agent emits 8 poses at 0.5 s along the path ahead; the controller drives a bicycle model."""
    ctrl = TrajectoryController(ControllerConfig())
    pose = np.array([0.0, y0, 0.0])
    v, s = 0.0, 0.0
    errors, speeds, controls = [], [], []
    for _ in range(int(seconds / DT)):
        cand = s + np.linspace(-5.0, 10.0, 301)
        dist = np.linalg.norm(_path(kind, cand) - pose[:2], axis=1)
        s, err = float(cand[np.argmin(dist)]), float(dist.min())
        ahead = _path(kind, s + v_ref * 0.5 * np.arange(1, 9))
        poses = np.column_stack([_to_ego(ahead, pose), np.zeros(8)])
        target = _to_ego(_path(kind, np.array([s + 8.0]))[0], pose)
        cmd = ctrl.control(poses, v, target)
        controls.append((cmd.steer, cmd.throttle, cmd.brake))
        wheel = steer_sign * cmd.steer * MAX_WHEEL_ANGLE
        accel = 4.0 * cmd.throttle - 8.0 * cmd.brake - 0.02 * v * v
        pose = pose + DT * np.array([v * math.cos(pose[2]), v * math.sin(pose[2]),
                                     -v / WHEELBASE * math.tan(wheel)])  # CARLA: steer > 0 turns right
        v = max(0.0, v + accel * DT)
        errors.append(err)
        speeds.append(v)
    return np.array(errors), np.array(speeds), s, np.array(controls)


def test_tracks_a_straight_reference_from_a_lateral_offset():
    errors, speeds, progress, controls = simulate("straight", v_ref=5.0, seconds=30.0, y0=1.5)
    assert errors[0] == pytest.approx(1.5, abs=1e-6)
    assert errors[-200:].max() < 0.1  # offset removed within 20 s
    assert abs(speeds[-200:].mean() - 5.0) < 0.3  # speed implied by the waypoint spacing
    assert progress > 120.0
    assert np.all(np.abs(controls[:, 0]) <= 1.0)
    assert np.all((controls[:, 1] >= 0) & (controls[:, 1] <= 0.75))


def test_tracks_a_curved_reference():
    errors, speeds, progress, _ = simulate("curve", v_ref=5.0, seconds=30.0)
    assert errors[100:].max() < 0.6  # R = 25 m left turn, about a full circle
    assert abs(speeds[-200:].mean() - 5.0) < 0.3
    assert progress > 120.0


def test_simulation_detects_a_wrong_steering_sign():
    errors, _, _, _ = simulate("straight", v_ref=5.0, seconds=15.0, y0=1.5, steer_sign=-1.0)
    assert errors.max() > 5.0


def test_stopped_trajectory_brakes():
    ctrl = TrajectoryController(ControllerConfig())
    poses = np.zeros((8, 3))
    cmd = ctrl.control(poses, speed=3.0, target_ego=np.array([10.0, 0.0]))
    assert cmd.brake == 1.0 and cmd.throttle == 0.0
    # Too fast for the plan (speed / desired > 1.1): brake as well.
    slow = np.column_stack([np.arange(1, 9) * 1.0, np.zeros(8), np.zeros(8)])  # 2 m/s
    assert ctrl.control(slow, speed=3.0, target_ego=np.array([10.0, 0.0])).brake == 1.0


def test_steer_sign_follows_carla_convention():
    left = np.column_stack([np.arange(1, 9) * 2.0, np.arange(1, 9) * 0.5, np.zeros(8)])  # bends to +y (left)
    cmd = TrajectoryController(ControllerConfig()).control(left, 4.0, np.array([8.0, 2.0]))
    assert cmd.steer < 0  # CARLA: negative steer turns left
    assert to_controller_frame(np.array([[1.0, 2.0]])).tolist() == [[-2.0, 1.0]]


def test_uniad_speed_cap_cuts_throttle():
    fast = np.column_stack([np.arange(1, 9) * 4.0, np.zeros(8), np.zeros(8)])  # 8 m/s plan
    cfg = ControllerConfig.uniad()
    assert TrajectoryController(cfg).control(fast, 5.5, np.array([10.0, 0.0])).throttle == 0.0
    assert TrajectoryController(ControllerConfig()).control(fast, 5.5, np.array([10.0, 0.0])).throttle > 0.0


def test_pid_window_integral_and_derivative():
    pid = PID(PIDGains(k_p=1.0, k_i=1.0, k_d=1.0, window=4))
    assert pid.step(2.0) == pytest.approx(2.0 + 2.0 / 4 + 2.0)  # window starts as zeros
    assert pid.step(2.0) == pytest.approx(2.0 + 4.0 / 4 + 0.0)
    for _ in range(4):
        out = pid.step(1.0)
    assert out == pytest.approx(1.0 + 1.0 + 0.0)  # old errors left the window
