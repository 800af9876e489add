"""Stage three of IRL-VLA: PPO fine-tuning of the IL policy's diffusion planner, rewarded by the reward world model
(or, for comparison, by the exact EPDMS scorer), with no simulator.

* ``ppo`` the algorithm (one file, cleanrl style, ``Args`` config), checkpoints, the training loop;
* ``world`` the training scenes (frozen IL scene features, scoring cases) and ``rewards`` (RWM / exact);
* ``agent`` the fine-tuned policy as an agent (``irlvla_rl:CHECKPOINT``);
* ``hacking`` RWM-predicted vs exact sub-metrics of two policies on held-out scenes (reward-hacking check);
* ``cli`` ``irlvla-bench train rl``.

Importing this package (or ``cli``) does not import torch.
"""
