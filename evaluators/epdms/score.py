"""EPDMS of one frame: simulate, run the traffic step, compute every sub-metric, apply the human filter.

One code path serves both modes:
* ``submission``: each proposal is scored as its own NAVSIM submission (batch [PDM reference, proposal], its
  own human-filter pass), exactly as ``navsim.evaluate.pdm_score`` does;
* ``labelling``: all proposals of the scene in one batch, the reference and the human trajectory simulated
  and scored once (when the traffic does not react to the ego) and shared. Reactive traffic (``idm``) rolls
  out once per proposal, the reference is scored against each proposal's traffic, and batches are capped at
  ``REACTIVE_ROWS_PER_BATCH`` proposals to bound the per-row observations' memory.
Every row is computed independently of the others, so both modes give identical numbers per proposal. The
arithmetic after the metrics (EP normalisation, human filter, weighted part) is elementwise per row, so it runs
once over all batches of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from evaluators.epdms import simulation
from evaluators.epdms.config import NAVSIM_V2, EPDMSConfig
from evaluators.epdms.metrics.areas import drivable_area_compliance, driving_direction_compliance, ego_area_flags
from evaluators.epdms.metrics.collisions import no_at_fault_collisions, time_to_collision
from evaluators.epdms.metrics.comfort import history_comfort
from evaluators.epdms.metrics.lane_keeping import lane_keeping
from evaluators.epdms.metrics.progress import normalized_progress, raw_progress
from evaluators.epdms.metrics.traffic_lights import traffic_light_compliance
from evaluators.epdms.scene import PreparedScene, prepare_scene
from evaluators.epdms.traffic import Observation, TrafficPolicy, get_policy
from irlvla_bench.types import ScoringCase

MODES = ("submission", "labelling")
# Reactive traffic gives every row its own observation (41 frames x objects x box); labelling mode scores such
# scenes in batches of this many proposals to bound that memory. Rows are independent, so batching changes no
# number.
REACTIVE_ROWS_PER_BATCH = 256
# NAVSIM hard-wires the Pacifica in its tracker, whatever vehicle the case names.
_TRACKER = simulation.TrackerConfig()

MULTIPLICATIVE = (
    "no_at_fault_collisions",
    "drivable_area_compliance",
    "driving_direction_compliance",
    "traffic_light_compliance",
)
WEIGHTED = ("ego_progress", "time_to_collision_within_bound", "lane_keeping", "history_comfort")
SUB_METRICS = MULTIPLICATIVE + WEIGHTED


# ----------------------------------------------------------------------------------------------------------------
# Rows: metrics of simulated ego states against one observation each


@dataclass(frozen=True)
class RowMetrics:
    """Unnormalised metrics of R simulated rows (EP is still raw progress in metres)."""

    values: dict[str, np.ndarray]  # SUB_METRICS except ego_progress, each (R,)
    progress_m: np.ndarray  # (R,)
    flags: np.ndarray  # (R, 41, 4) ego-area flags
    collision_step: np.ndarray  # (R,) first at-fault collision step, inf if none
    ttc_step: np.ndarray  # (R,)

    @property
    def multiplicative(self) -> np.ndarray:
        v = self.values
        return (
            v["no_at_fault_collisions"]
            * v["drivable_area_compliance"]
            * v["driving_direction_compliance"]
            * v["traffic_light_compliance"]
        )


def ego_coordinates(states: np.ndarray, vehicle) -> np.ndarray:
    """(R, T, 11) rear-axle states -> (R, T, 5, 2) corners FL, RL, RR, FR and centre, NAVSIM's arithmetic."""
    return _ego_coordinates(np.ascontiguousarray(states, dtype=np.float64), float(vehicle.rear_axle_to_center),
                            float(vehicle.half_length), float(vehicle.half_width))


@njit(cache=True, error_model="numpy")
def _ego_coordinates(states, rear_axle_to_center, half_length, half_width):
    # NAVSIM's operation order, term by term (the lateral offset through cos/sin(heading + pi/2), not -sin/cos):
    # ego corners decide boundary ties of the area flags, so they must round as NAVSIM's do. Numba's cos/sin
    # equal NumPy's bit for bit (tests/test_epdms_geometry.py checks this kernel against the NumPy formula).
    num_rows, num_steps = states.shape[0], states.shape[1]
    coords = np.empty((num_rows, num_steps, 5, 2))
    lon = (half_length, -half_length, -half_length, half_length)
    lat = (half_width, half_width, -half_width, -half_width)
    half_pi = np.pi / 2.0
    for r in range(num_rows):
        for t in range(num_steps):
            heading = states[r, t, 2]
            cos, sin = np.cos(heading), np.sin(heading)
            cos_lat, sin_lat = np.cos(heading + half_pi), np.sin(heading + half_pi)
            cx = states[r, t, 0] + rear_axle_to_center * cos
            cy = states[r, t, 1] + rear_axle_to_center * sin
            coords[r, t, 4, 0], coords[r, t, 4, 1] = cx, cy
            for k in range(4):
                coords[r, t, k, 0] = cx + (lat[k] * cos_lat + lon[k] * cos)
                coords[r, t, k, 1] = cy + (lat[k] * sin_lat + lon[k] * sin)
    return coords


def evaluate_rows(scene: PreparedScene, states: np.ndarray, observation: Observation, obs_index: np.ndarray,
                  *, with_history: bool, with_weighted: bool = True) -> RowMetrics:
    cfg = scene.config
    vehicle = scene.vehicle
    coords = ego_coordinates(states, vehicle)
    drivable = scene.drivable.arrays
    flags = ego_area_flags(coords, scene.drivable_kinds, *scene.drivable_grid.arrays, *drivable)
    ego_radius = scene.ego_radius
    obs = (observation.corners, observation.centers, observation.radius, observation.present)
    nc, collision_step = no_at_fault_collisions(
        states, coords, flags, obs_index, *obs, observation.is_agent, observation.first_stopped, ego_radius,
        cfg.collision_stopped_speed, cfg.agent_behind_rad, cfg.static_collision_score,
    )
    red = scene.red_lights
    values = {
        "no_at_fault_collisions": nc,
        "drivable_area_compliance": drivable_area_compliance(flags),
        "driving_direction_compliance": driving_direction_compliance(coords, flags, cfg),
        "traffic_light_compliance": traffic_light_compliance(coords, scene.red_active, *red.arrays, red.edge_ptr),
    }
    progress_m = raw_progress(coords, scene.centerline)
    num_rows = states.shape[0]
    ttc_step = np.full(num_rows, np.inf)
    if with_weighted:
        values["time_to_collision_within_bound"], ttc_step = time_to_collision(
            states, coords, flags, obs_index, *obs, cfg.ttc_offsets, cfg.interval_s, cfg.ttc_last_step, ego_radius,
            cfg.ttc_stopped_speed, cfg.agent_ahead_rad, cfg.agent_behind_rad,
            scene.drivable_kinds, *drivable,
        )
        values["lane_keeping"] = lane_keeping(coords, flags, cfg.lane_keeping_steps, *scene.centerline_index.arrays)
        values["history_comfort"] = history_comfort(
            states, scene.history if with_history else None, cfg.interval_s, vehicle.rear_axle_to_center, cfg.comfort
        )
    return RowMetrics(values=values, progress_m=progress_m, flags=flags, collision_step=collision_step,
                      ttc_step=ttc_step)


# ----------------------------------------------------------------------------------------------------------------
# Simulation of ego-frame trajectories


def simulate_trajectories(scene: PreparedScene, poses_ego: np.ndarray) -> np.ndarray:
    """(N, 8, 3) ego-frame poses -> (N, 41, 11) simulated states."""
    case = scene.case
    global_poses = simulation.proposal_poses_to_global(case.ego.rear_axle, poses_ego)
    reference = simulation.sample_poses_10hz(case.ego.rear_axle, case.time_us, global_poses)
    return simulation.simulate(scene.initial_state, reference, _TRACKER)


def simulate_reference(scene: PreparedScene) -> np.ndarray:
    """(1, 41, 11) simulated PDM-Closed reference."""
    case = scene.case
    reference = simulation.sample_reference_10hz(case.pdm_reference, case.pdm_reference_interval_s, case.time_us)
    return simulation.simulate(scene.initial_state, reference[None], _TRACKER)


# ----------------------------------------------------------------------------------------------------------------
# One frame


@dataclass(frozen=True)
class FrameScores:
    """Scores of N proposals of one frame, plus what the group aggregation and the diagnostics need."""

    case: ScoringCase
    proposal_index: np.ndarray  # (N,) indices into case.proposals
    metrics: dict[str, np.ndarray]  # SUB_METRICS after the human filter
    unfiltered: dict[str, np.ndarray]
    multiplicative: np.ndarray  # product after the filter
    pdm_score: np.ndarray  # NAVSIM's own pdm_score, computed before the filter (stale)
    weighted_part: np.ndarray  # (5EP + 5TTC + 2LK + 2HC) / 14 after the filter
    score_single_frame: np.ndarray
    simulated_states: np.ndarray  # (N, 41, 11)
    endpoints: np.ndarray  # (N, 2) the agent's last pose (un-simulated) in the global frame
    progress_m: np.ndarray
    reference_progress_m: np.ndarray
    reference_multiplicative: np.ndarray
    reference_metrics: dict[str, np.ndarray]
    normalizer_m: np.ndarray
    flags: np.ndarray  # (N, 41, 4)
    collision_step: np.ndarray
    ttc_step: np.ndarray
    human: dict[str, np.ndarray] | None  # the human trajectory's own metrics, per proposal row
    human_states: np.ndarray | None  # (41, 11)
    overrides: list[list[str]]

    def __len__(self) -> int:
        return len(self.proposal_index)


def _weighted_part(metrics: dict[str, np.ndarray], cfg: EPDMSConfig) -> np.ndarray:
    weights = cfg.single_frame_weights
    total = sum(w * metrics[name] for name, w in zip(WEIGHTED, weights))
    return total / float(sum(weights))


@dataclass(frozen=True)
class _Batch:
    """One NAVSIM batch [PDM reference, proposals...]: the proposals' simulated states and metrics, and the
    reference's metrics against the same traffic (one row shared by the batch, or one per proposal)."""

    proposal_index: np.ndarray
    states: np.ndarray
    rows: RowMetrics
    reference: RowMetrics


def _evaluate_batch(scene: PreparedScene, proposal_index: np.ndarray, policy: TrafficPolicy, cache: dict) -> _Batch:
    """Simulate and score proposals as one NAVSIM batch; ``cache`` holds the scene's proposal-independent
    results (simulated reference, its metrics under shared traffic), identical for every proposal, so computing
    them once changes no number."""
    num = len(proposal_index)
    states = simulate_trajectories(scene, scene.case.proposals.poses[proposal_index])
    if "reference_states" not in cache:
        cache["reference_states"] = simulate_reference(scene)
    reference_states = cache["reference_states"]

    observation = _observe(scene, states, policy, cache)
    shared = observation.batch == 1
    own_index = np.zeros(num, dtype=np.int64) if shared else np.arange(num, dtype=np.int64)
    rows = evaluate_rows(scene, states, observation, own_index, with_history=True)
    # The reference is scored against the traffic that reacted to each proposal; when the traffic ignores
    # the ego that is one and the same evaluation for every proposal of the scene.
    if shared and "reference_rows" in cache:
        reference = cache["reference_rows"]
    else:
        ref_rows = reference_states if shared else np.repeat(reference_states, num, axis=0)
        reference = evaluate_rows(scene, ref_rows, observation, np.zeros(len(ref_rows), dtype=np.int64) if shared
                                  else own_index, with_history=False, with_weighted=False)
        if shared:
            cache["reference_rows"] = reference
    return _Batch(np.asarray(proposal_index), states, rows, reference)


def _finalise(scene: PreparedScene, batches: list[_Batch], policy: TrafficPolicy, cache: dict) -> FrameScores:
    """NAVSIM's per-submission arithmetic after the metrics (EP normalisation against the reference, the
    stale pdm_score, the human filter, the weighted part), elementwise over the batches' rows: each row's
    numbers are those of its own batch."""
    case, cfg = scene.case, scene.config

    proposal_index = np.concatenate([b.proposal_index for b in batches])
    num = len(proposal_index)

    def rows_of(field: str) -> np.ndarray:
        return np.concatenate([getattr(b.rows, field) for b in batches])

    references = [b.reference for b in batches]
    shared_reference = all(r is references[0] for r in references)  # traffic that ignores the ego

    def reference_of(values) -> np.ndarray:
        if shared_reference:
            return np.broadcast_to(values(references[0]), (num,)).copy()
        return np.concatenate([np.broadcast_to(values(r), (len(b.proposal_index),))
                               for b, r in zip(batches, references)])

    values = {name: np.concatenate([b.rows.values[name] for b in batches]) for name in batches[0].rows.values}
    progress_m = rows_of("progress_m")
    ref_progress = reference_of(lambda r: r.progress_m)
    ref_multiplicative = reference_of(lambda r: r.multiplicative)
    multiplicative = (values["no_at_fault_collisions"] * values["drivable_area_compliance"]
                      * values["driving_direction_compliance"] * values["traffic_light_compliance"])
    normalizer = np.maximum(ref_progress * ref_multiplicative, progress_m * multiplicative)
    unfiltered = dict(values)
    unfiltered["ego_progress"] = normalized_progress(progress_m, normalizer, cfg.progress_distance_threshold_m)
    pdm_score = multiplicative * _weighted_part(unfiltered, cfg)

    metrics = dict(unfiltered)
    human = human_states = None
    overrides: list[list[str]] = [[] for _ in range(num)]
    if cfg.human_penalty_filter and case.is_original:
        human, human_states = _human_metrics(scene, policy, cache)
        for name in SUB_METRICS:
            if human[name] == 0.0:
                # Recorded only where the override changes the value, as NAVSIM's result rows show it.
                for row in np.flatnonzero(metrics[name] != 1.0):
                    overrides[row].append(name)
                metrics[name] = np.ones(num)
        multiplicative = (metrics["no_at_fault_collisions"] * metrics["drivable_area_compliance"]
                          * metrics["driving_direction_compliance"] * metrics["traffic_light_compliance"])
    weighted_part = _weighted_part(metrics, cfg)

    end_local = case.proposals.poses[proposal_index, -1]
    ego = case.ego.rear_axle
    c, s = np.cos(ego[2]), np.sin(ego[2])
    endpoints = np.stack([ego[0] + c * end_local[:, 0] - s * end_local[:, 1],
                          ego[1] + s * end_local[:, 0] + c * end_local[:, 1]], axis=-1)
    return FrameScores(
        case=case,
        proposal_index=proposal_index,
        metrics=metrics,
        unfiltered=unfiltered,
        multiplicative=multiplicative,
        pdm_score=pdm_score,
        weighted_part=weighted_part,
        score_single_frame=multiplicative * weighted_part,
        simulated_states=np.concatenate([b.states for b in batches]),
        endpoints=endpoints,
        progress_m=progress_m,
        reference_progress_m=ref_progress,
        reference_multiplicative=ref_multiplicative,
        reference_metrics={k: reference_of(lambda r, k=k: r.values[k]) for k in references[0].values},
        normalizer_m=normalizer,
        flags=rows_of("flags"),
        collision_step=rows_of("collision_step"),
        ttc_step=rows_of("ttc_step"),
        human={k: np.full(num, v) for k, v in human.items()} if human is not None else None,
        human_states=human_states,
        overrides=overrides,
    )


def _observe(scene: PreparedScene, states: np.ndarray, policy: TrafficPolicy, cache: dict):
    """The traffic for ``states``; traffic that does not react to the ego is one observation for the whole scene,
    so it is built once (building the object boxes per proposal was a tenth of submission mode's time)."""
    if policy.reacts_to_ego:
        return policy.observe(scene, states)
    if "observation" not in cache:
        cache["observation"] = policy.observe(scene, states)
    return cache["observation"]


def _human_metrics(scene: PreparedScene, policy: TrafficPolicy, cache: dict):
    """The logged human trajectory simulated and scored alone (no reference, no past), once per scene."""
    if "human" not in cache:
        # Reactive traffic reacts to the human's own rollout here, as NAVSIM re-simulates it for the filter.
        states = simulate_trajectories(scene, scene.case.human_future[None])
        observation = _observe(scene, states, policy, cache)
        rows = evaluate_rows(scene, states, observation, np.zeros(1, dtype=np.int64), with_history=False)
        values = {k: float(v[0]) for k, v in rows.values.items()}
        normalizer = rows.progress_m * rows.multiplicative
        values["ego_progress"] = float(
            normalized_progress(rows.progress_m, normalizer, scene.config.progress_distance_threshold_m)[0]
        )
        cache["human"] = (values, states[0])
    return cache["human"]


def score_frame(case: ScoringCase, *, traffic: str | TrafficPolicy = "log_replay", mode: str = "submission",
                config: EPDMSConfig = NAVSIM_V2, scene: PreparedScene | None = None) -> FrameScores:
    """Score every proposal of ``case``; see the module docstring for the two modes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    policy = get_policy(traffic) if isinstance(traffic, str) else traffic
    scene = scene if scene is not None and scene.case is case else prepare_scene(case, config)
    num = len(case.proposals)
    cache: dict = {}
    if mode == "submission":
        batches = [np.array([i]) for i in range(num)]
    elif policy.reacts_to_ego and num > REACTIVE_ROWS_PER_BATCH:
        batches = np.array_split(np.arange(num), -(-num // REACTIVE_ROWS_PER_BATCH))
    else:
        batches = [np.arange(num)]
    return _finalise(scene, [_evaluate_batch(scene, rows, policy, cache) for rows in batches], policy, cache)


def frame_table(scores: FrameScores, *, diagnostics: bool = False) -> pd.DataFrame:
    """One row per proposal with NAVSIM's column names."""
    case, cfg = scores.case, NAVSIM_V2
    ids = [case.proposals.ids[i] for i in scores.proposal_index]
    table = pd.DataFrame({"token": case.token, "proposal_id": ids, "proposal_index": scores.proposal_index})
    for name in SUB_METRICS:
        table[name] = scores.metrics[name]
    table["multiplicative_metrics_prod"] = scores.multiplicative
    table["weighted_metrics"] = [
        np.array([scores.metrics[n][i] for n in WEIGHTED] + [0.0]) for i in range(len(scores))
    ]
    table["weighted_metrics_array"] = [np.asarray(cfg.weighted_metrics_array) for _ in range(len(scores))]
    table["pdm_score"] = scores.pdm_score
    table["weighted_part_single_frame"] = scores.weighted_part
    table["score_single_frame"] = scores.score_single_frame
    table["frame_type"] = case.scene_type
    table["start_time"] = case.time_us * 1e-6
    table["endpoint_x"] = scores.endpoints[:, 0]
    table["endpoint_y"] = scores.endpoints[:, 1]
    table["start_point_x"] = case.ego.rear_axle[0]
    table["start_point_y"] = case.ego.rear_axle[1]
    table["ego_simulated_states"] = list(scores.simulated_states)
    if diagnostics:
        for name in SUB_METRICS:
            table[f"unfiltered_{name}"] = scores.unfiltered[name]
        table["progress_raw_m"] = scores.progress_m
        table["reference_progress_raw_m"] = scores.reference_progress_m
        table["progress_normalizer_m"] = scores.normalizer_m
        table["collision_time_s"] = scores.collision_step * cfg.interval_s
        table["ttc_time_s"] = scores.ttc_step * cfg.interval_s
        table["human_filter_overrides"] = scores.overrides
    return table


def score_case(case: ScoringCase, *, traffic: str | TrafficPolicy = "log_replay", mode: str = "submission",
               config: EPDMSConfig = NAVSIM_V2, diagnostics: bool = False) -> pd.DataFrame:
    """Score a case's proposals and return the per-proposal table (NAVSIM column names)."""
    return frame_table(score_frame(case, traffic=traffic, mode=mode, config=config), diagnostics=diagnostics)

