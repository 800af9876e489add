"""Every threshold, weight and horizon of the EPDMS, defined once.

Defaults are NAVSIM v2's (navsim main @ 0a380a9: ``PDMScorerConfig``, ``pdm_comfort_metrics``,
``SceneAggregator``, nuPlan's ``is_agent_ahead/behind``, ``get_collision_type``). Nothing else in the evaluator
holds a number with a meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

# Bump when any score can change for the same input; stored in every result and checked by comparisons.
SCORER_VERSION = "epdms-navsim2@0a380a9/irlvla-1"


@dataclass(frozen=True)
class ComfortBounds:
    """nuPlan's ego comfort bounds used by history comfort (HC); each is a strict open interval."""

    max_abs_mag_jerk: float = 8.37  # m/s^3
    max_abs_lat_accel: float = 4.89  # m/s^2
    max_lon_accel: float = 2.40  # m/s^2
    min_lon_accel: float = -4.05  # m/s^2
    max_abs_yaw_accel: float = 1.93  # rad/s^2
    max_abs_lon_jerk: float = 4.13  # m/s^3
    max_abs_yaw_rate: float = 0.95  # rad/s
    accel_window: int = 8  # Savitzky-Golay window for accelerations (even: scipy accepts it, as NAVSIM relies on)
    jerk_window: int = 15  # Savitzky-Golay window for jerk
    # NAVSIM's yaw-rate helper accepts a window but never passes it on, so yaw rate and yaw acceleration use
    # the derivative helper's default of 5.
    yaw_window: int = 5
    poly_order: int = 2
    yaw_accel_poly_order: int = 3  # HC's yaw acceleration uses a cubic fit; EC's uses poly_order
    decimals: int = 8  # NAVSIM rounds every comfort signal to 8 decimals before comparing


@dataclass(frozen=True)
class ExtendedComfortThresholds:
    """Two-frame extended comfort (EC): RMS of per-step differences between overlapping simulated states."""

    acceleration: float = 0.7  # m/s^2
    jerk: float = 0.5  # m/s^3
    yaw_rate: float = 0.1  # rad/s
    yaw_accel: float = 0.1  # rad/s^2


@dataclass(frozen=True)
class IDMConfig:
    """NAVSIM's reactive traffic (``navsim_IDM_traffic_agents.yaml`` over nuPlan's IDM agents) and the GEOS
    constants of the shapely buffers its agents use to find their leader (they decide which agent is ahead)."""

    target_velocity: float = 10.0  # m/s, a lane without speed limit
    min_gap_to_lead_agent: float = 1.0  # m
    headway_time: float = 1.5  # s, also stretches each agent's projected footprint by v * headway
    accel_max: float = 1.0  # m/s^2
    decel_max: float = 2.0  # m/s^2 (positive)
    acceleration_exponent: float = 4.0  # IDM's delta
    step_s: float = 0.1  # the agents' Euler step (NAVSIM's fixed tspan)
    radius_m: float = 100.0  # agents farther than this from the (lagged) ego rear axle are dropped for good
    snap_threshold_m: float = 3.0  # idm_snap_threshold: farther from the lane baseline -> not simulated
    parked_speed: float = 0.1  # m/s, below it an unsimulated vehicle counts as stationary (parked)
    heading_lookahead_m: float = 0.5  # nuPlan's polyline heading: direction to the point 0.5 m further on
    repeated_progress_atol: float = 1e-8  # np.isclose(diff, 0) in create_path_from_se2 drops such vertices
    # shapely ``buffer(width / 2, cap_style=flat)`` of the agents' paths (GEOS OffsetSegmentGenerator)
    buffer_quadrant_segments: int = 16
    buffer_separation_factor: float = 1e-3  # outside turns with offset ends this close (x distance) get no join
    buffer_vertex_snap_factor: float = 1e-6  # curve points this close (x distance) are merged


@dataclass(frozen=True)
class EPDMSConfig:
    # weighted metrics (NAVSIM WeightedMetricIndex order: EP, TTC, LK, HC, EC)
    progress_weight: float = 5.0
    ttc_weight: float = 5.0
    lane_keeping_weight: float = 2.0
    history_comfort_weight: float = 2.0
    extended_comfort_weight: float = 2.0

    # sampling of the simulated ego: 41 states at 0.1 s
    interval_s: float = 0.1
    num_poses: int = 40

    # driving direction compliance (DDC)
    driving_direction_horizon_s: float = 1.0
    driving_direction_compliance_m: float = 2.0
    driving_direction_violation_m: float = 6.0

    # collisions (NC): nuPlan's get_collision_type thresholds
    collision_stopped_speed: float = 5e-2  # m/s, ego and tracks
    agent_ahead_deg: float = 30.0
    agent_behind_deg: float = 150.0
    static_collision_score: float = 0.5  # hitting a static object costs half

    # time to collision (TTC)
    ttc_stopped_speed: float = 5e-3  # m/s
    ttc_horizon_s: float = 1.0
    ttc_step: int = 3  # projections every 3 steps: 0, 0.3, 0.6, 0.9 s

    # ego progress (EP)
    progress_distance_threshold_m: float = 5.0

    # lane keeping (LK)
    lane_keeping_deviation_m: float = 0.5
    lane_keeping_horizon_s: float = 2.0

    comfort: ComfortBounds = field(default_factory=ComfortBounds)
    extended_comfort: ExtendedComfortThresholds = field(default_factory=ExtendedComfortThresholds)
    idm: IDMConfig = field(default_factory=IDMConfig)

    # pseudo-closed-loop weights of second-stage frames: exp(-d^2 / (2 sigma^2))
    gaussian_sigma_squared: float = 0.1
    # np.isclose(weight_sum, 0) in SceneAggregator
    weight_sum_zero_atol: float = 1e-8
    # SceneAggregator asserts this bound on the (now, prev) frame offset
    max_prev_frame_offset_s: float = 0.55

    human_penalty_filter: bool = True

    @property
    def single_frame_weights(self) -> tuple[float, float, float, float]:
        return (self.progress_weight, self.ttc_weight, self.lane_keeping_weight, self.history_comfort_weight)

    @property
    def weighted_metrics_array(self) -> tuple[float, float, float, float, float]:
        return self.single_frame_weights + (self.extended_comfort_weight,)

    # Derived constants are cached on the (frozen) instance: the per-proposal path reads them for every row.

    @cached_property
    def ttc_offsets(self) -> np.ndarray:
        """Steps of the TTC projections (0, 3, 6, 9), int64, read-only."""
        offsets = np.arange(0, int(self.ttc_horizon_s * 10), self.ttc_step, dtype=np.int64)
        offsets.flags.writeable = False
        return offsets

    @cached_property
    def ttc_last_step(self) -> int:
        """The last step from which every TTC projection still lands on a simulated state."""
        return self.num_poses - int(self.ttc_offsets.max())

    @cached_property
    def agent_ahead_rad(self) -> float:
        return float(np.deg2rad(self.agent_ahead_deg))

    @cached_property
    def agent_behind_rad(self) -> float:
        return float(np.deg2rad(self.agent_behind_deg))

    @cached_property
    def driving_direction_window(self) -> int:
        return int(self.driving_direction_horizon_s / self.interval_s)

    @cached_property
    def lane_keeping_steps(self) -> int:
        return int(math.ceil(self.lane_keeping_horizon_s / self.interval_s))


NAVSIM_V2 = EPDMSConfig()
