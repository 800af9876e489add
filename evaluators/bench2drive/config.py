"""Every constant of the Bench2Drive metrics, defined once (Bench2Drive 0.0.4 @ 7ec25d1).

Spec: ``shared/spec/bench2drive-metrics.md``.  Units are given where they exist; where the official tool mixes
units (angular velocity in deg/s compared against rad/s bounds) the bound is kept as the tool has it, because the
published numbers were produced that way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Key order of RouteRecord.infractions as the StatisticsManager writes it.
INFRACTION_KEYS: tuple[str, ...] = (
    "collisions_layout",
    "collisions_pedestrian",
    "collisions_vehicle",
    "red_light",
    "stop_infraction",
    "outside_route_lanes",
    "min_speed_infractions",
    "yield_emergency_vehicle_infractions",
    "scenario_timeouts",
    "route_dev",
    "vehicle_blocked",
    "route_timeout",
)

ABILITY_NAMES: tuple[str, ...] = ("Overtaking", "Merging", "Emergency_Brake", "Give_Way", "Traffic_Signs")

# tools/ability_benchmark.py `Ability`; membership is tested with `in`, so its duplicate entries do not matter.
_ABILITY_TYPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Overtaking", (
        "Accident", "AccidentTwoWays", "ConstructionObstacle", "ConstructionObstacleTwoWays",
        "HazardAtSideLaneTwoWays", "HazardAtSideLane", "ParkedObstacleTwoWays", "ParkedObstacle",
        "VehicleOpensDoorTwoWays",
    )),
    ("Merging", (
        "CrossingBicycleFlow", "EnterActorFlow", "HighwayExit", "InterurbanActorFlow", "HighwayCutIn",
        "InterurbanAdvancedActorFlow", "MergerIntoSlowTrafficV2", "MergerIntoSlowTraffic",
        "NonSignalizedJunctionLeftTurn", "NonSignalizedJunctionRightTurn", "NonSignalizedJunctionLeftTurnEnterFlow",
        "ParkingExit", "SequentialLaneChange", "SignalizedJunctionLeftTurn", "SignalizedJunctionRightTurn",
        "SignalizedJunctionLeftTurnEnterFlow",
    )),
    ("Emergency_Brake", (
        "BlockedIntersection", "DynamicObjectCrossing", "HardBreakRoute", "OppositeVehicleTakingPriority",
        "OppositeVehicleRunningRedLight", "ParkingCutIn", "PedestrianCrossing", "ParkingCrossingPedestrian",
        "StaticCutIn", "VehicleTurningRoute", "VehicleTurningRoutePedestrian", "ControlLoss",
    )),
    ("Give_Way", ("InvadingTurn", "YieldToEmergencyVehicle")),
    ("Traffic_Signs", (
        "BlockedIntersection", "OppositeVehicleTakingPriority", "OppositeVehicleRunningRedLight",
        "PedestrianCrossing", "VehicleTurningRoute", "VehicleTurningRoutePedestrian", "EnterActorFlow",
        "CrossingBicycleFlow", "NonSignalizedJunctionLeftTurn", "NonSignalizedJunctionRightTurn",
        "NonSignalizedJunctionLeftTurnEnterFlow", "SignalizedJunctionLeftTurn", "SignalizedJunctionRightTurn",
        "SignalizedJunctionLeftTurnEnterFlow", "T_Junction", "VanillaNonSignalizedTurn",
        "VanillaSignalizedTurnEncounterGreenLight", "VanillaSignalizedTurnEncounterRedLight",
        "VanillaNonSignalizedTurnEncounterStopsign",
    )),
)

# Penalty factor per infraction list (StatisticsManager, SM:21-38).  outside_route_lanes is (1 - pct/100) and the
# remaining lists (min speed, deviation, blocked, route timeout) carry no penalty in Bench2Drive.
PENALTY_FACTORS: tuple[tuple[str, float], ...] = (
    ("collisions_pedestrian", 0.5),
    ("collisions_vehicle", 0.6),
    ("collisions_layout", 0.65),
    ("red_light", 0.7),
    ("stop_infraction", 0.8),
    ("scenario_timeouts", 0.7),
    ("yield_emergency_vehicle_infractions", 0.7),
)


@dataclass(frozen=True)
class ComfortBounds:
    """Open intervals a 20-step chunk must stay inside (efficiency_smoothness_benchmark.py:9-26)."""

    min_lon_accel: float = -4.05  # m/s^2
    max_lon_accel: float = 2.40  # m/s^2
    max_abs_lat_accel: float = 4.89  # m/s^2
    max_abs_mag_jerk: float = 8.37  # m/s^3 (with the tool's dt, see Bench2DriveConfig.jerk_dt)
    max_abs_lon_jerk: float = 4.13  # m/s^3
    # Named rad/s^2 and rad/s by the tool, but compared against the log's deg/s yaw *rate*: kept as is.
    max_abs_yaw_accel: float = 1.93
    max_abs_yaw_rate: float = 0.95


@dataclass(frozen=True)
class Bench2DriveConfig:
    """Constants of merge_route_json.py, ability_benchmark.py and efficiency_smoothness_benchmark.py."""

    # merge divides by the size of the official 220-route set whatever was evaluated (even Dev10).
    route_divisor: int = 220
    # merge skips every globbed path containing this substring (so merged_ability.json is *not* skipped).
    merged_skip_substring: str = "merged.json"
    success_statuses: tuple[str, ...] = ("Completed", "Perfect")
    # The only infraction list that does not block success.
    success_ignored_infractions: tuple[str, ...] = ("min_speed_infractions",)
    ability_types: tuple[tuple[str, tuple[str, ...]], ...] = _ABILITY_TYPES
    # Traffic_Signs partial credit: RC/100 > (first_junction_count + offset) / len(trace).
    junction_offset: int = 8
    # Infraction lists that forbid Traffic_Signs partial credit.
    junction_blocking_infractions: tuple[str, ...] = ("stop_infraction", "red_light")
    # Efficiency: first match of this regex in each min-speed message; values above the cap are dropped.
    efficiency_regex: str = r"\b\d+\.?\d*%"
    efficiency_max_percent: float = 1000.0
    comfort: ComfortBounds = field(default_factory=ComfortBounds)
    comfort_chunk_steps: int = 20
    savgol_window: int = 7
    savgol_polyorder: int = 2
    # The logs are 20 Hz (50 ms) but the tool differentiates with 0.1 s: the published jerks are half the true ones.
    jerk_dt: float = 0.1

    def abilities_of(self, scenario_type: str) -> tuple[str, ...]:
        return tuple(name for name, types in self.ability_types if scenario_type in types)

    def ability_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.ability_types)


DEFAULT_CONFIG = Bench2DriveConfig()
