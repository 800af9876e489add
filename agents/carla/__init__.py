"""Put any trajectory-emitting agent on the CARLA leaderboard (Bench2Drive protocol).

Importing this package needs neither ``carla`` nor the leaderboard; :func:`missing_dependencies` says what is
absent.  The leaderboard entry file is ``agents/carla/leaderboard_agent.py``.
"""

from ._deps import MissingDependency
from ._deps import missing as missing_dependencies
from .adapter import AdapterConfig, TrajectoryAgentAdapter, load_trajectory_agent
from .controller import ControlCommand, ControllerConfig, PIDGains, TrajectoryController
from .protocol import CarlaAgentInput, EgoStatus, RoadOption, TrajectoryAgent, trajectory_poses
from .sensors import (CAMERA_IDS, SensorConfigurationInvalid, SensorDataInvalid, bench2drive_rig,
                      validate_sensor_configuration)

__all__ = [
    "AdapterConfig",
    "CAMERA_IDS",
    "CarlaAgentInput",
    "ControlCommand",
    "ControllerConfig",
    "EgoStatus",
    "MissingDependency",
    "PIDGains",
    "RoadOption",
    "SensorConfigurationInvalid",
    "SensorDataInvalid",
    "TrajectoryAgent",
    "TrajectoryAgentAdapter",
    "TrajectoryController",
    "bench2drive_rig",
    "load_trajectory_agent",
    "missing_dependencies",
    "trajectory_poses",
    "validate_sensor_configuration",
]
