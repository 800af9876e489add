"""Baseline agents: constant velocity, the logged human and PDM-Closed (both privileged), and a trainable
ego-status MLP. Importing this package imports neither torch nor any agent module (they load on demand through
the registry in ``agents.registered``)."""
