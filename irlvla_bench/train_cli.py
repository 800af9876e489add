"""``irlvla-bench train ...``: one sub-app; each model's module adds its own command through ``register(app)``.

Modules listed here must not import torch at import time (``irlvla-bench --help`` stays fast and torch-free).
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train the baseline MLP, IL policy, RWM and PPO.")

# (module, its registration function): a module that is not there yet simply adds no command.
TRAINERS = (
    ("agents.baselines.ego_mlp_cli", "register"),
    ("agents.vla.cli", "register"),
    ("agents.rwm.cli", "register"),
    ("agents.rl.cli", "register"),
)

for module_name, function in TRAINERS:
    if find_spec(module_name.rpartition(".")[0]) is not None and find_spec(module_name) is not None:
        getattr(importlib.import_module(module_name), function)(app)
