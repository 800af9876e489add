"""Losses of the RWM: one per sub-metric head (weights in ``LossWeights``), the assembled EPDMS, a within-scene
listwise ranking term, and the optional Bradley-Terry expert preference.

Heads learn the *unfiltered* labels (``raw_*``): those are functions of the trajectory and the scene. The
filter and the EP normaliser enter through ``assemble`` in the EPDMS and ranking terms, whose targets are the
labels' filtered EPDMS.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agents.rwm.assemble import FILTERED, assemble, expectations
from agents.rwm.config import LossWeights
from agents.rwm.model import BINARY, PROGRESS_SCALE_M, THREE_CLASS
from irlvla_bench.labelling.label import RAW_PREFIX

EC = "extended_comfort"
# Every loss term, named after its weight in ``LossWeights`` (the CSV log's columns follow this order).
TERMS = THREE_CLASS + BINARY + ("progress", "reference_progress", "epdms", "ranking", "preference")


def assembled(heads: dict[str, torch.Tensor], has_human: torch.Tensor) -> dict[str, torch.Tensor]:
    """Assemble a batch whose slot 0 is the reference and slot 1 the human trajectory."""
    values, zero = expectations(heads)
    product = values["no_at_fault_collisions"] * values["drivable_area_compliance"] * \
        values["driving_direction_compliance"] * values["traffic_light_compliance"]
    human_zero = {name: zero[name][:, 1] for name in FILTERED}
    return assemble(values, heads["progress"], heads["progress"][:, 0], product[:, 0], human_zero, has_human)


def rwm_losses(heads: dict[str, torch.Tensor], batch: dict[str, torch.Tensor], weights: LossWeights,
               reference_guess: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Named loss terms and their weighted ``total``."""
    terms: dict[str, torch.Tensor] = {}
    for name in THREE_CLASS:
        target = torch.round(batch[RAW_PREFIX + name] * 2.0).long()
        terms[name] = F.cross_entropy(heads[name].reshape(-1, 3), target.reshape(-1))
    for name in BINARY:
        target = batch[EC] if name == EC else batch[RAW_PREFIX + name]
        valid = ~torch.isnan(target)
        if valid.any():
            terms[name] = F.binary_cross_entropy_with_logits(heads[name][valid], target[valid])
        else:
            terms[name] = heads[name].sum() * 0.0
    terms["progress"] = F.smooth_l1_loss(heads["progress"] / PROGRESS_SCALE_M, batch["progress_m"] / PROGRESS_SCALE_M)
    if reference_guess is not None:
        target = batch["reference_progress_m"][:, 0] * batch["reference_multiplicative"][:, 0]
        terms["reference_progress"] = F.smooth_l1_loss(reference_guess / PROGRESS_SCALE_M, target / PROGRESS_SCALE_M)

    out = assembled(heads, batch["has_human"])
    score = out["epdms"]
    label = batch["epdms"]
    terms["epdms"] = F.mse_loss(score, label)
    t = weights.ranking_temperature
    # ListNet over the sampled candidates (slots 2..): the RWM's ordering should put mass where the exact one does.
    target = torch.softmax(label[:, 2:] / t, dim=-1)
    terms["ranking"] = -(target * torch.log_softmax(score[:, 2:] / t, dim=-1)).sum(-1).mean()
    human = batch["has_human"]
    if human.any():
        margin = (score[human, 1:2] - score[human, 2:]) / weights.preference_temperature
        terms["preference"] = -F.logsigmoid(margin).mean()
    else:
        terms["preference"] = score.sum() * 0.0

    # Every term is named after its weight in LossWeights.
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    terms["total"] = total
    return terms
