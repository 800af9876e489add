"""Lazy access to the optional CARLA dependencies, with messages that say what is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

CARLA_HINT = ("the `carla` Python client is not installed; install the version matching your simulator, "
              "e.g. `pip install carla==0.9.16` (Bench2Drive uses CARLA 0.9.15/0.9.16)")
LEADERBOARD_HINT = ("the CARLA leaderboard package (`leaderboard.autoagents.autonomous_agent`, shipped in "
                    "Bench2Drive's `leaderboard/` folder together with `scenario_runner/`) is not importable; put "
                    "Bench2Drive's leaderboard and scenario_runner folders first on PYTHONPATH. Note that this "
                    "project has its own top-level `leaderboard` package (results store) which the CARLA one "
                    "must shadow in the evaluation process")


class MissingDependency(ImportError):
    pass


def carla() -> ModuleType:
    """The ``carla`` module, or a MissingDependency naming how to get it."""
    try:
        return importlib.import_module("carla")
    except ImportError as exc:
        raise MissingDependency(f"{CARLA_HINT} ({exc})") from exc


def leaderboard_agent_module() -> ModuleType | None:
    """``leaderboard.autoagents.autonomous_agent`` when the CARLA leaderboard is importable, else None."""
    try:
        return importlib.import_module("leaderboard.autoagents.autonomous_agent")
    except ImportError:
        return None


def missing() -> list[str]:
    """Human-readable list of what is not importable (empty when everything is)."""
    out = []
    try:
        carla()
    except MissingDependency as exc:
        out.append(str(exc))
    if leaderboard_agent_module() is None:
        out.append(LEADERBOARD_HINT)
    return out
