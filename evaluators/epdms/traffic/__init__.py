"""Traffic policies (one registry): ``log_replay`` now, NAVSIM's reactive IDM in its own module."""

from evaluators.epdms.traffic import log_replay  # noqa: F401  (registers the policy)
from evaluators.epdms.traffic.base import Observation, TrafficPolicy, available_policies, get_policy, register_policy

__all__ = ["Observation", "TrafficPolicy", "available_policies", "get_policy", "register_policy"]
