"""From per-trajectory head outputs to the sub-metrics and the EPDMS, with the evaluator's own rules.

* Expected values: NC and DDC take E = 0.5 p(0.5) + p(1); the binary metrics their probability of 1.
* Human filter (original frames, ``EPDMSConfig.human_penalty_filter``): a metric the logged human trajectory
  itself fails (== 0) is set to 1 for every candidate. The RWM scores the human trajectory like any other and
  uses its probability of failing: E_filtered = P(human fails) + (1 - P(human fails)) E. The human's EP and HC
  are never 0 in the evaluator (its EP has itself as normaliser, its HC no history), so only NC, DAC, DDC, TLC,
  TTC and LK are filtered.
* EP: raw progress over the normaliser max(reference progress x reference product, own progress x own product),
  clipped to [0, 1], and 1 where the normaliser is below ``progress_distance_threshold_m`` (products before
  the filter, as the evaluator computes them).
* EPDMS: NC x DAC x DDC x TLC x (w_EP EP + w_TTC TTC + w_LK LK + w_HC HC + w_EC EC) / sum(w), weights from
  ``EPDMSConfig.weighted_metrics_array``. With expected values this is the expected score under independent
  sub-metrics; on exact (one-hot) inputs it is the evaluator's formula exactly (tested).
"""

from __future__ import annotations

import torch

from agents.rwm.model import BINARY, CLASS_VALUES, THREE_CLASS
from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.score import MULTIPLICATIVE

FILTERED = ("no_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance",
            "traffic_light_compliance", "time_to_collision_within_bound", "lane_keeping")
EC = "extended_comfort"


def expectations(heads: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(expected value, probability of exactly 0) of every sub-metric head."""
    values, zero = {}, {}
    for name in THREE_CLASS:
        probs = heads[name].softmax(dim=-1)
        values[name] = (probs * probs.new_tensor(CLASS_VALUES)).sum(-1)
        zero[name] = probs[..., 0]
    for name in BINARY:
        p = torch.sigmoid(heads[name])
        values[name] = p
        zero[name] = 1.0 - p
    return values, zero


def ego_progress(progress: torch.Tensor, product: torch.Tensor, reference_progress: torch.Tensor,
                 reference_product: torch.Tensor, config: EPDMSConfig = NAVSIM_V2) -> torch.Tensor:
    """EP of (S, K) candidates given their raw progress and products and the (S,) reference's."""
    normaliser = torch.maximum((reference_progress * reference_product)[:, None], progress * product)
    ratio = torch.clamp(progress / normaliser.clamp_min(1e-6), 0.0, 1.0)
    return torch.where(normaliser > config.progress_distance_threshold_m, ratio, torch.ones_like(ratio))


def assemble(values: dict[str, torch.Tensor], progress: torch.Tensor, reference_progress: torch.Tensor,
             reference_product: torch.Tensor, human_zero: dict[str, torch.Tensor] | None,
             has_human: torch.Tensor, config: EPDMSConfig = NAVSIM_V2) -> dict[str, torch.Tensor]:
    """Filtered sub-metrics, EP and EPDMS of (S, K) candidates.

    ``values``: unfiltered expected sub-metrics (S, K) incl. ``extended_comfort``; ``progress`` (S, K) metres;
    ``reference_progress`` / ``reference_product`` (S,); ``human_zero`` per filtered metric (S,) the probability
    that the human trajectory scores 0 (None: no filter); ``has_human`` (S,) bool (original frames)."""
    product = torch.ones_like(progress)
    for name in MULTIPLICATIVE:
        product = product * values[name]
    out = dict(values)
    if human_zero is not None and config.human_penalty_filter:
        for name in FILTERED:
            p = (human_zero[name] * has_human.to(progress.dtype))[:, None]
            out[name] = p + (1.0 - p) * values[name]
    out["ego_progress"] = ego_progress(progress, product, reference_progress, reference_product, config)
    filtered_product = torch.ones_like(progress)
    for name in MULTIPLICATIVE:
        filtered_product = filtered_product * out[name]
    weights = config.weighted_metrics_array
    weighted = (weights[0] * out["ego_progress"] + weights[1] * out["time_to_collision_within_bound"]
                + weights[2] * out["lane_keeping"] + weights[3] * out["history_comfort"] + weights[4] * out[EC])
    out["multiplicative"] = filtered_product
    out["epdms"] = filtered_product * weighted / sum(weights)
    return out
