"""A Bench2Drive/CARLA-leaderboard agent around any trajectory-emitting agent.

Per tick: sensor data -> :class:`CarlaAgentInput` (ego status, route command, RGB cameras) -> the wrapped agent's
``compute_trajectory`` -> (8, 3) ego-frame poses -> Zoo-style PID -> ``carla.VehicleControl``.

:class:`TrajectoryAgentAdapter` runs without the leaderboard package (offline tests, custom loops);
``agents.carla.leaderboard_agent`` builds the same agent on top of the leaderboard's ``AutonomousAgent``.
"""

from __future__ import annotations

import datetime
import importlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from . import _deps
from .controller import ControlCommand, ControllerConfig, PIDGains, TrajectoryController
from .metric_log import MetricInfoRecorder
from .protocol import (TRAJECTORY_POSES, CarlaAgentInput, EgoStatus, RoadOption, TrajectoryAgent,
                       driving_command_one_hot, trajectory_poses)
from .route import RouteNode, RoutePlanner, downsample_route, gps_to_location, solve_geo_reference
from .sensors import CAMERA_IDS, bench2drive_rig, parse_sensor_data, validate_sensor_configuration

AGENT_ENV = "IRLVLA_CARLA_AGENT"  # "module:factory" used when the leaderboard's agent config names none


@dataclass(frozen=True)
class AdapterConfig:
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    camera_width: int = 1600
    camera_height: int = 900
    include_bev: bool = False
    num_poses: int = TRAJECTORY_POSES
    route_min_distance: float = 4.0  # m, Zoo RoutePlanner
    route_max_distance: float = 50.0  # m
    route_ahead_nodes: int = 5
    metric_flush_every: int = 20


class Track(Enum):
    SENSORS = "SENSORS"


def load_trajectory_agent(spec: str, kwargs: Mapping[str, Any] | None = None) -> TrajectoryAgent:
    """``"package.module:factory"`` -> ``factory(**kwargs)`` (a class or a function)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"agent spec must be 'package.module:factory', got {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    agent = factory(**dict(kwargs or {}))
    if not isinstance(agent, TrajectoryAgent):
        raise TypeError(f"{spec} built {type(agent).__name__}, which has no compute_trajectory(agent_input)")
    return agent


def _controller_from(overrides: Mapping[str, Any]) -> ControllerConfig:
    base = ControllerConfig()
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in ("turn", "speed"):
            changes[key] = PIDGains(**value)
        elif key in ControllerConfig.__dataclass_fields__:
            changes[key] = value
        else:
            raise ValueError(f"unknown controller setting {key!r}")
    return base.with_(**changes)


def parse_agent_config(conf: str) -> tuple[TrajectoryAgent | None, dict[str, Any]]:
    """The part of the leaderboard's agent config before '+': a JSON file, a 'module:factory' spec, or empty.

    JSON: ``{"agent": "pkg.mod:factory", "kwargs": {...}, "controller": {...}, "adapter": {...}}``.
    """
    if not conf:
        env = os.environ.get(AGENT_ENV)
        return (load_trajectory_agent(env) if env else None), {}
    if conf.endswith(".json") or Path(conf).is_file():
        with open(conf, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or "agent" not in data:
            raise ValueError(f"{conf}: expected an object with 'agent': 'package.module:factory'")
        adapter = dict(data.get("adapter", {}))
        if "controller" in data:
            adapter["controller"] = _controller_from(data["controller"])
        return load_trajectory_agent(data["agent"], data.get("kwargs")), adapter
    return load_trajectory_agent(conf), {}


def make_vehicle_control(cmd: ControlCommand) -> Any:
    carla = _deps.carla()
    control = carla.VehicleControl(throttle=float(cmd.throttle), steer=float(cmd.steer), brake=float(cmd.brake),
                                   hand_brake=False, reverse=False)
    control.manual_gear_shift = False
    return control


class TrajectoryAdapterMixin:
    """Leaderboard agent methods; the host class provides ``_global_plan``/``_global_plan_world_coord``."""

    _global_plan: Any
    _global_plan_world_coord: Any

    def _init_adapter(self, trajectory_agent: TrajectoryAgent | None, config: AdapterConfig | None,
                      hero_actor: Any = None) -> None:
        self._trajectory_agent = trajectory_agent
        self._config = config or AdapterConfig()
        if hero_actor is not None or not hasattr(self, "hero_actor"):
            self.hero_actor = hero_actor
        self._rig = bench2drive_rig(self._config.camera_width, self._config.camera_height,
                                    self._config.include_bev)
        self._controller = TrajectoryController(self._config.controller)
        self._planner: RoutePlanner | None = None
        self._geo_ref: tuple[float, float] | None = None
        self._last_heading = 0.0  # CARLA yaw [rad]; reused when the compass reads NaN (first frames)
        self._recorder: MetricInfoRecorder | None = None
        self.step = -1
        self.save_name: str | None = None
        self.last_input: CarlaAgentInput | None = None
        self.last_command: ControlCommand | None = None

    # -- leaderboard interface -------------------------------------------------------------------------------
    def setup(self, path_to_conf_file: str) -> None:
        """``path_to_conf_file`` is ``<config>[+...]+<save_name>`` under Bench2Drive (the save name comes last)."""
        parts = str(path_to_conf_file or "").split("+")
        self.save_name = parts[-1] if len(parts) > 1 else datetime.datetime.now().strftime("%m_%d_%H_%M_%S")
        agent, adapter_overrides = parse_agent_config(parts[0])
        if adapter_overrides:
            self._config = replace(self._config, **adapter_overrides)
            self._rig = bench2drive_rig(self._config.camera_width, self._config.camera_height,
                                        self._config.include_bev)
            self._controller = TrajectoryController(self._config.controller)
        if agent is not None:
            self._trajectory_agent = agent
        if self._trajectory_agent is None:
            raise ValueError("no trajectory agent: pass trajectory_agent=..., name 'package.module:factory' (or a "
                             f"JSON file) as the leaderboard's agent config, or set {AGENT_ENV}")
        self.track = getattr(self, "_track_enum", Track).SENSORS
        save_path = os.environ.get("SAVE_PATH")
        if save_path and getattr(self, "hero_actor", None) is not None:
            self._recorder = MetricInfoRecorder(Path(save_path) / self.save_name, self._config.metric_flush_every)

    def sensors(self) -> list[dict[str, Any]]:
        rig = [dict(s) for s in self._rig]
        validate_sensor_configuration(rig, save_path_set=bool(os.environ.get("SAVE_PATH")))
        return rig

    def run_step(self, input_data: Mapping[str, Any], timestamp: float) -> Any:
        agent_input = self.build_input(input_data, timestamp)
        poses = trajectory_poses(self._trajectory_agent.compute_trajectory(agent_input), self._config.num_poses)
        cmd = self._controller.control(poses, agent_input.ego_status.speed, agent_input.target_point)
        self.last_command = cmd
        if self._recorder is not None:
            self._recorder.record(self.step, self.hero_actor)
        return make_vehicle_control(cmd)

    def destroy(self) -> None:
        if self._recorder is not None:
            self._recorder.flush()

    # -- conversion ------------------------------------------------------------------------------------------
    def _init_route(self) -> None:
        if not self._global_plan or not self._global_plan_world_coord:
            raise RuntimeError("set_global_plan() must be called before the first run_step()")
        gps0 = self._global_plan[0][0]
        start = self._global_plan_world_coord[0][0]
        x0, y0 = _location_xy(start)
        rotation = getattr(start, "rotation", None)
        if rotation is not None:  # heading until the compass gives a reading (it is NaN on early frames)
            self._last_heading = math.radians(float(rotation.yaw))
        self._geo_ref = solve_geo_reference(float(gps0["lat"]), float(gps0["lon"]), x0, y0)
        nodes = [RouteNode(gps_to_location(float(g["lat"]), float(g["lon"]), *self._geo_ref),
                           RoadOption.coerce(opt)) for g, opt in self._global_plan]
        self._planner = RoutePlanner(nodes, self._config.route_min_distance, self._config.route_max_distance)

    def build_input(self, input_data: Mapping[str, Any], timestamp: float) -> CarlaAgentInput:
        """Validate this tick's sensor data and convert it to the agent's input (advances the route)."""
        self.step += 1
        frame = parse_sensor_data(input_data, self._rig)
        if self._planner is None:
            self._init_route()
        assert self._planner is not None and self._geo_ref is not None
        compass = frame.imu[6]
        imu_ok = math.isfinite(compass)
        if imu_ok:
            # CARLA compass: 0 = north (-y), clockwise; CARLA yaw: from +x towards +y.
            self._last_heading = compass - math.pi / 2
        yaw = self._last_heading
        pos = gps_to_location(float(frame.gnss[0]), float(frame.gnss[1]), *self._geo_ref)
        node = self._planner.run_step(pos)
        ahead = [node] + [n for n in self._planner.ahead(self._config.route_ahead_nodes) if n is not node]

        heading = -yaw  # right-handed world frame
        accel = frame.imu[0:2] if imu_ok else np.zeros(2)
        gyro_z = frame.imu[5] if imu_ok else 0.0
        ego = EgoStatus(
            pose=np.array([pos[0], -pos[1], heading]),
            velocity=np.array([frame.speed, 0.0]),
            acceleration=np.array([accel[0], -accel[1]]),
            yaw_rate=float(-gyro_z),
            speed=frame.speed,
            gnss=frame.gnss.copy(),
        )
        route_ego = np.array([_map_to_ego(n.position, pos, yaw) for n in ahead[:self._config.route_ahead_nodes]])
        agent_input = CarlaAgentInput(
            step=self.step,
            timestamp=float(timestamp),
            ego_status=ego,
            driving_command=driving_command_one_hot(node.option),
            road_option=node.option,
            target_point=route_ego[0],
            route_ahead=route_ego,
            cameras={cid: frame.cameras[cid] for cid in CAMERA_IDS},
            camera_specs={s["id"]: {k: v for k, v in s.items() if k not in ("id", "type")}
                          for s in self._rig if s["type"] == "sensor.camera.rgb"},
        )
        self.last_input = agent_input
        return agent_input


def _location_xy(transform: Any) -> tuple[float, float]:
    loc = getattr(transform, "location", transform)
    return float(loc.x), float(loc.y)


def _map_to_ego(point: np.ndarray, ego_xy: np.ndarray, yaw: float) -> np.ndarray:
    """CARLA map point -> ego frame (x forward, y left) for an ego at ``ego_xy`` with CARLA yaw ``yaw``."""
    dx, dy = float(point[0] - ego_xy[0]), float(point[1] - ego_xy[1])
    forward = dx * math.cos(yaw) + dy * math.sin(yaw)
    right = -dx * math.sin(yaw) + dy * math.cos(yaw)
    return np.array([forward, -right])


class OfflineAgentBase:
    """The parts of the leaderboard's ``AutonomousAgent`` that need no simulator (used without the package)."""

    _track_enum = Track

    def __init__(self, carla_host: str | None = None, carla_port: int | None = None, debug: bool = False):
        self.track = Track.SENSORS
        self._global_plan: list | None = None
        self._global_plan_world_coord: list | None = None
        self.hero_actor = None

    def set_global_plan(self, global_plan_gps: Sequence[Any], global_plan_world_coord: Sequence[Any]) -> None:
        ids = downsample_route(global_plan_world_coord, 50.0)
        self._global_plan_world_coord = [(global_plan_world_coord[i][0], global_plan_world_coord[i][1]) for i in ids]
        self._global_plan = [global_plan_gps[i] for i in ids]

    def __call__(self, input_data: Mapping[str, Any], timestamp: float) -> Any:
        control = self.run_step(input_data, timestamp)  # type: ignore[attr-defined]
        control.manual_gear_shift = False
        return control


class TrajectoryAgentAdapter(TrajectoryAdapterMixin, OfflineAgentBase):
    """Standalone adapter: same behaviour as the leaderboard agent, no leaderboard package needed."""

    def __init__(self, carla_host: str | None = None, carla_port: int | None = None, debug: bool = False, *,
                 trajectory_agent: TrajectoryAgent | None = None, config: AdapterConfig | None = None,
                 hero_actor: Any = None):
        OfflineAgentBase.__init__(self, carla_host, carla_port, debug)
        self._init_adapter(trajectory_agent, config, hero_actor)
