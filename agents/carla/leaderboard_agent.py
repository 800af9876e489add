"""Entry module for the CARLA leaderboard / Bench2Drive evaluator (``--agent=.../leaderboard_agent.py``).

The leaderboard imports this file by path and looks up ``get_entry_point()``; the agent class is built on first
access so that importing the module never needs ``carla`` or the leaderboard package.  Absolute imports only: the
leaderboard imports the file as a top-level module.

Agent config (``--agent-config``): a JSON file ``{"agent": "package.module:factory", "kwargs": {...},
"controller": {...}}`` or directly ``package.module:factory``; Bench2Drive appends ``+<save_name>``.
"""

from __future__ import annotations

from typing import Any

from agents.carla import _deps

ENTRY_POINT = "IrlvlaTrajectoryAgent"


def get_entry_point() -> str:
    return ENTRY_POINT


def build_agent_class() -> type:
    """The leaderboard agent class; raises MissingDependency naming what is not installed."""
    _deps.carla()
    lb = _deps.leaderboard_agent_module()
    if lb is None:
        raise _deps.MissingDependency(_deps.LEADERBOARD_HINT)
    from agents.carla.adapter import TrajectoryAdapterMixin

    base = lb.AutonomousAgent

    class IrlvlaTrajectoryAgent(TrajectoryAdapterMixin, base):  # type: ignore[misc, valid-type]
        _track_enum = lb.Track

        def __init__(self, carla_host: str, carla_port: int, debug: bool = False, **kwargs: Any):
            base.__init__(self, carla_host, carla_port, debug)  # sets sensor_interface and hero_actor
            self._init_adapter(kwargs.get("trajectory_agent"), kwargs.get("config"))

    return IrlvlaTrajectoryAgent


def __getattr__(name: str) -> Any:
    if name == ENTRY_POINT:
        cls = build_agent_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
