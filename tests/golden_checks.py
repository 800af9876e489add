"""Field-by-field comparison of our scores with NAVSIM's golden results, shared by the log-replay and the IDM
golden tests (the result files have one format; only the traffic policy and the file suffix differ)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import GOLDEN_EPDMS, golden_inputs, load_json
from evaluators.epdms import SUB_METRICS, score_frame, score_groups
from evaluators.epdms.config import NAVSIM_V2
from evaluators.epdms.groups import pool_groups
from evaluators.epdms.results import group_document
from irlvla_bench.io.scoring_case import load_case, load_group

TOL = 1e-6
EXTRA = ("multiplicative_metrics_prod", "pdm_score", "weighted_part_single_frame", "score_single_frame")
RESULT_SUFFIX = {"log_replay": ".result.json.gz", "idm": ".result.idm.json.gz"}


def gold_path(case_path: Path, traffic: str) -> Path:
    return case_path.with_name(case_path.name.replace(".json.gz", RESULT_SUFFIX[traffic]))


def case_errors(path: Path, traffic: str, mode: str = "labelling") -> list[str]:
    """Every sub-metric, the products and scores, simulated states, unfiltered metrics, the PDM reference's
    progress and product (scored against the traffic of this proposal), the human filter's overrides and the
    human trajectory's own metrics of one golden case; an empty list when all agree within TOL."""
    case = load_case(path)
    gold = load_json(gold_path(path, traffic))
    scores = score_frame(case, traffic=traffic, mode=mode)
    errors = []
    for row, proposal in enumerate(gold["proposals"]):
        assert case.proposals.ids[row] == proposal["id"]
        values = {name: scores.metrics[name][row] for name in SUB_METRICS}
        values.update(multiplicative_metrics_prod=scores.multiplicative[row], pdm_score=scores.pdm_score[row],
                      weighted_part_single_frame=scores.weighted_part[row],
                      score_single_frame=scores.score_single_frame[row])
        for name in SUB_METRICS + EXTRA:
            if abs(values[name] - proposal[name]) > TOL:
                errors.append(f"{proposal['id']}.{name}: ours {values[name]} NAVSIM {proposal[name]}")
        state_error = np.abs(scores.simulated_states[row] - np.asarray(proposal["simulated_states"])).max()
        if state_error > TOL:
            errors.append(f"{proposal['id']}.simulated_states: max error {state_error:.3g}")
        diagnostics = proposal["diagnostics"]
        for name in SUB_METRICS:
            if abs(scores.unfiltered[name][row] - diagnostics["unfiltered"][name]) > TOL:
                errors.append(f"{proposal['id']}.unfiltered.{name}")
        if abs(scores.reference_progress_m[row] - diagnostics["progress_raw_m"]["pdm_reference"]) > TOL:
            errors.append(f"{proposal['id']}.reference progress")
        if abs(scores.reference_multiplicative[row] - diagnostics["pdm_reference_multiplicative"]) > TOL:
            errors.append(f"{proposal['id']}.reference multiplicative")
        if sorted(scores.overrides[row]) != sorted(proposal.get("human_filter_overrides", [])):
            errors.append(f"{proposal['id']}.human_filter_overrides")
        if scores.human is not None:
            for name in SUB_METRICS:
                if abs(scores.human[name][row] - diagnostics["human"][name]) > TOL:
                    errors.append(f"{proposal['id']}.human.{name}")
    return errors


def group_errors(gold: dict, doc: dict) -> list[str]:
    """Per-token rows (with simulated states), per-mapping scores and stage summaries of a scene-group (or
    dataset) document against NAVSIM's."""
    errors = []
    for gold_agent, agent in zip(gold["agents"], doc["agents"]):
        for token, gold_row in gold_agent["tokens"].items():
            row = agent["tokens"][token]
            for name in SUB_METRICS + ("multiplicative_metrics_prod", "two_frame_extended_comfort", "weight", "score"):
                if abs(row[name] - gold_row[name]) > TOL:
                    errors.append(f"agent {gold_agent['agent_index']} {token}.{name}: {row[name]} vs {gold_row[name]}")
            state_error = np.abs(np.asarray(row["simulated_states"]) - np.asarray(gold_row["simulated_states"])).max()
            if state_error > TOL:
                errors.append(f"agent {gold_agent['agent_index']} {token}.simulated_states")
        for gold_map, mapping in zip(gold_agent["groups"], agent["groups"]):
            for name in ("score", "stage_one_score", "stage_two_score"):
                if abs(mapping[name] - gold_map[name]) > TOL:
                    errors.append(f"agent {gold_agent['agent_index']} mapping {name}")
        for block, values in gold_agent["summary"].items():
            for name, value in values.items():
                if abs(agent["summary"][block][name] - value) > TOL:
                    errors.append(f"agent {gold_agent['agent_index']} summary {block}.{name}")
    return errors


def score_golden_groups(traffic: str) -> list:
    """(group, its scores) for every golden scene group, labelling mode."""
    return [(g, score_groups([g], traffic=traffic, mode="labelling"))
            for g in (load_group(p) for p in golden_inputs("groups"))]


def group_failures(scored: list, traffic: str) -> dict[str, list[str]]:
    """group id (and ``dataset_public`` for their pool) -> its deviations from NAVSIM; only those that deviate."""
    suffix = RESULT_SUFFIX[traffic]
    documents = [(g.group_id, group_document(s, traffic)) for g, s in scored]
    documents.append(("dataset_public", group_document(pool_groups([s for _, s in scored], NAVSIM_V2), traffic)))
    failures = {}
    for name, doc in documents:
        errors = group_errors(load_json(GOLDEN_EPDMS / "groups" / f"{name}{suffix}"), doc)
        if errors:
            failures[name] = errors
    return failures
