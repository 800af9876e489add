"""Reward world model (IRL-VLA stage two): scene + candidate trajectory -> every EPDMS sub-metric and the EPDMS.

Modules: ``config`` (frozen dataclasses, loss weights), ``features`` (raster BEV, ego vector; NumPy),
``sensors_bev`` (camera images lifted to the ground), ``il_adapter`` (the IL policy's BEV features),
``encoders`` / ``model`` / ``assemble`` / ``losses`` (torch), ``data`` (label shards -> batches), ``train``
(resume, DDP, CSV logs), ``predict`` (``RewardModel``, what PPO calls), ``cli`` (``irlvla-bench train rwm``).
Importing this package does not import torch.
"""
