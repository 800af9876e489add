"""Route penalty recomputed from a record's infraction lists (StatisticsManager.compute_route_statistics).

Used only to audit records: the official tools never recompute it, they read ``scores.score_composed``, which
was made from the *unrounded* outside-lanes percentage that the message only carries to two decimals.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from .config import PENALTY_FACTORS

_OUTSIDE_PCT = re.compile(r"\(([-+0-9.eE]+)% of the completed route\)")
# Rounding of the written fields: score_penalty to 6 decimals, the outside-lanes percentage to 2.
PENALTY_TOLERANCE = 1e-4


def penalty_from_infractions(infractions: Mapping[str, Sequence[str]]) -> float | None:
    """Product of the per-event factors; None when an outside-lanes message cannot be read."""
    p = 1.0
    for key, factor in PENALTY_FACTORS:
        p *= factor ** len(infractions.get(key, ()))
    for msg in infractions.get("outside_route_lanes", ()):
        m = _OUTSIDE_PCT.search(msg)
        if m is None:
            return None
        p *= 1.0 - float(m.group(1)) / 100.0
    return p
