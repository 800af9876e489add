"""Traffic policies (one registry): ``log_replay`` (NAVSIM's non-reactive replay) and ``idm`` (its reactive agents)."""

from evaluators.epdms.traffic import idm, log_replay  # noqa: F401  (registers the policies)
from evaluators.epdms.traffic.base import Observation, TrafficPolicy, available_policies, get_policy, register_policy

__all__ = ["Observation", "TrafficPolicy", "available_policies", "get_policy", "register_policy"]
