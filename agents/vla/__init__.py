"""The IL VLA policy of IRL-VLA (stage one): VoVNetV2 cameras -> lift-splat BEV -> perception heads, meta-action
commands, truncated-diffusion planner. See ``agents/vla/README.md``. Importing the package does not import torch."""
