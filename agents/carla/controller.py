"""Trajectory -> (steer, throttle, brake): the PID scheme of Bench2DriveZoo's ``team_code/pid_controller.py``.

A lateral PID steers towards an aim waypoint about 4 m ahead (or towards the next route node when the predicted
path disagrees with it), a longitudinal PID tracks the speed implied by the waypoint spacing, and braking is
decided by thresholds.  Pure NumPy, no CARLA.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from .protocol import TRAJECTORY_INTERVAL_S


@dataclass(frozen=True)
class PIDGains:
    k_p: float
    k_i: float
    k_d: float
    window: int  # samples averaged by the integral term


@dataclass(frozen=True)
class ControllerConfig:
    """Defaults are Bench2DriveZoo's ``PIDController`` with VAD's post-processing (no speed cap)."""

    turn: PIDGains = PIDGains(0.75, 0.75, 0.3, 40)
    speed: PIDGains = PIDGains(5.0, 0.5, 1.0, 40)
    max_throttle: float = 0.75
    brake_speed: float = 0.4  # m/s: desired speed below which we brake
    brake_ratio: float = 1.1  # brake when speed / desired speed exceeds this
    clip_delta: float = 0.25  # m/s: cap of the speed error fed to the longitudinal PID
    aim_dist: float = 4.0  # m: aim at the waypoint pair whose midpoint is closest to this distance
    angle_thresh: float = 0.3  # normalised angle (1 = 90 deg): predicted path vs route disagreement
    dist_thresh: float = 10.0  # m: only trust the route node when it is this close ahead
    waypoint_interval_s: float = TRAJECTORY_INTERVAL_S
    # Post-processing as in the Zoo agents.
    min_brake: float = 0.05  # smaller brake commands are dropped
    speed_cap: float | None = None  # m/s: cut throttle above this (UniAD's agent uses 5.0)

    @classmethod
    def uniad(cls) -> ControllerConfig:
        return cls(speed_cap=5.0)

    def with_(self, **changes: object) -> ControllerConfig:
        return replace(self, **changes)


class PID:
    """``K_P e + K_I mean(last n errors) + K_D (e - e_prev)``; the window starts as n zeros."""

    def __init__(self, gains: PIDGains):
        self.gains = gains
        self._window: deque[float] = deque([0.0] * gains.window, maxlen=gains.window)

    def step(self, error: float) -> float:
        self._window.append(error)
        g = self.gains
        if len(self._window) < 2:  # a window of one sample has no history (as in the Zoo)
            return g.k_p * error
        integral = float(np.mean(self._window))
        derivative = self._window[-1] - self._window[-2]
        return g.k_p * error + g.k_i * integral + g.k_d * derivative

    def reset(self) -> None:
        self._window = deque([0.0] * self.gains.window, maxlen=self.gains.window)


@dataclass(frozen=True)
class ControlCommand:
    steer: float  # [-1, 1], positive = right (CARLA)
    throttle: float  # [0, max_throttle]
    brake: float  # [0, 1]
    desired_speed: float  # m/s
    aim_angle: float  # normalised steering target actually used
    used_route_target: bool


def _angle(v: np.ndarray) -> float:
    """Normalised heading of a point in the controller frame (x right, y forward): 0 ahead, +1 = 90 deg right."""
    return float(np.degrees(np.pi / 2 - np.arctan2(v[1], v[0])) / 90.0)


def to_controller_frame(points_ego: np.ndarray) -> np.ndarray:
    """Ego frame (x forward, y left) -> the Zoo controller's frame (x right, y forward)."""
    pts = np.asarray(points_ego, dtype=np.float64)[..., :2]
    return np.stack([-pts[..., 1], pts[..., 0]], axis=-1)


class TrajectoryController:
    """Stateful (the PID windows) controller; one instance per route."""

    def __init__(self, config: ControllerConfig = ControllerConfig()):
        self.config = config
        self.turn = PID(config.turn)
        self.speed = PID(config.speed)

    def reset(self) -> None:
        self.turn.reset()
        self.speed.reset()

    def control(self, poses_ego: np.ndarray, speed: float, target_ego: np.ndarray) -> ControlCommand:
        """``poses_ego``: (T >= 2, 2+) future ego-frame points at ``waypoint_interval_s``; ``target_ego``: next
        route node in the ego frame; ``speed``: forward speed in m/s."""
        cfg = self.config
        wps = to_controller_frame(poses_ego)
        target = to_controller_frame(np.asarray(target_ego, dtype=np.float64)[None, :2])[0]
        if wps.shape[0] < 2:
            raise ValueError("need at least two waypoints")

        steps = np.linalg.norm(np.diff(wps, axis=0), axis=1)
        desired_speed = float(steps.mean() / cfg.waypoint_interval_s)
        midpoints = np.linalg.norm((wps[1:] + wps[:-1]) / 2.0, axis=1)
        # First pair whose midpoint distance is strictly closest to aim_dist (the Zoo's loop keeps the first).
        aim = wps[int(np.argmin(np.abs(cfg.aim_dist - midpoints)))]

        angle = _angle(aim)
        angle_last = _angle(wps[-1] - wps[-2])
        angle_target = _angle(target)
        use_target = abs(angle_target) < abs(angle) or (
            abs(angle_target - angle_last) > cfg.angle_thresh and target[1] < cfg.dist_thresh)
        aim_angle = angle_target if use_target else angle
        steer = float(np.clip(self.turn.step(aim_angle), -1.0, 1.0))

        brake = desired_speed < cfg.brake_speed or (desired_speed > 0 and speed / desired_speed > cfg.brake_ratio)
        delta = float(np.clip(desired_speed - speed, 0.0, cfg.clip_delta))
        throttle = float(np.clip(self.speed.step(delta), 0.0, cfg.max_throttle))
        brake_value = 1.0 if brake else 0.0
        if brake:
            throttle = 0.0

        # Zoo agent post-processing.
        if brake_value < cfg.min_brake:
            brake_value = 0.0
        if throttle > brake_value:
            brake_value = 0.0
        if cfg.speed_cap is not None and speed > cfg.speed_cap:
            throttle = 0.0
        return ControlCommand(steer, float(np.clip(throttle, 0.0, cfg.max_throttle)),
                              float(np.clip(brake_value, 0.0, 1.0)), desired_speed, aim_angle, use_target)
