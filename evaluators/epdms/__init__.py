"""NAVSIM v2 EPDMS, re-implemented natively: exact against NAVSIM's scorer, numba-fast.

Public API:
* ``score_case(case, traffic=..., mode=...) -> DataFrame`` one row per proposal (NAVSIM column names);
* ``score_frame(...) -> FrameScores`` the same with arrays and diagnostics;
* ``score_groups([group, ...]) -> GroupScores`` two-stage (navhard) aggregation, pooled over groups;
* ``EPDMSConfig`` / ``NAVSIM_V2`` every threshold and weight, ``SCORER_VERSION``.
"""

from evaluators.epdms.config import NAVSIM_V2, SCORER_VERSION, EPDMSConfig
from evaluators.epdms.groups import GroupScores, score_groups
from evaluators.epdms.score import MODES, SUB_METRICS, FrameScores, frame_table, score_case, score_frame
from evaluators.epdms.traffic import available_policies, get_policy, register_policy

__all__ = [
    "EPDMSConfig",
    "FrameScores",
    "GroupScores",
    "MODES",
    "NAVSIM_V2",
    "SCORER_VERSION",
    "SUB_METRICS",
    "available_policies",
    "frame_table",
    "get_policy",
    "register_policy",
    "score_case",
    "score_frame",
    "score_groups",
]
