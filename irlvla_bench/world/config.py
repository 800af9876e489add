"""Configuration of the procedural world (frozen dataclasses; ``PRESETS`` names the usual sizes)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class RoadConfig:
    lane_width: float = 3.5  # m
    max_lanes: int = 2  # per direction and road
    block_x: tuple[float, float] = (120.0, 160.0)  # distance between junction centres [m]
    block_y: tuple[float, float] = (100.0, 140.0)
    loop_depth: tuple[float, float] = (40.0, 60.0)
    loop_radius: tuple[float, float] = (25.0, 35.0)  # > 3 lanes x 3.5 m, so offset curves stay simple
    junction_margin: float = 5.0  # junction radius beyond the widest half road [m]
    speed_limits: tuple[float, ...] = (11.176, 13.411, 15.646)  # 25 / 30 / 35 mph
    sidewalk_width: float = 2.5
    carpark_depth: float = 30.0
    sample_step: float = 1.0  # baseline vertex spacing [m] (nuPlan's IDM drops the last vertex)
    origin: tuple[float, float] = (664_000.0, 3_996_000.0)  # UTM-like offset of the local frame
    rotate: bool = True
    first_fid: int = 1000
    t_junction_signal_prob: float = 0.5
    green_s: tuple[float, float] = (7.0, 11.0)
    clearance_s: float = 2.0  # all-red time between approaches


@dataclass(frozen=True)
class TrafficConfig:
    vehicles: tuple[int, int] = (14, 22)
    cyclists: tuple[int, int] = (1, 3)
    pedestrians: tuple[int, int] = (6, 12)
    static_objects: tuple[int, int] = (4, 8)
    parked_cars: tuple[int, int] = (2, 5)
    speed_factor: tuple[float, float] = (0.75, 1.05)  # fraction of the speed limit
    idm_accel: float = 1.5
    idm_decel: float = 3.0
    idm_headway_s: float = 1.5
    idm_min_gap: float = 2.0
    red_light_decel: float = 4.0  # a car that cannot stop within this deceleration runs the amber
    detection_range: float = 80.0  # objects logged per frame within this distance of the ego [m]
    ego_lane_change_s: tuple[float, float] = (3.5, 5.0)
    ego_lane_change_prob: float = 0.3  # chance of a discretionary lane change per road
    warmup_s: float = 8.0


@dataclass(frozen=True)
class SensorSettings:
    width: int = 128  # image size of every camera (NAVSIM's are 1920 x 1080)
    height: int = 72
    jpeg_quality: int = 90
    lidar: bool = True
    lidar_beams: int = 16
    lidar_azimuths: int = 360
    render_range: float = 80.0  # objects farther than this are not drawn [m]


@dataclass(frozen=True)
class SplitSettings:
    navtest_frame_interval: int = 2  # stride between navtest-style scenes
    two_stage_mappings_per_log: int = 1
    two_stage_variants: int = 3  # second-stage synthetic (now, prev) pairs per mapping
    lateral_perturbation: tuple[float, float] = (0.3, 1.2)  # |offset| of synthetic start poses [m]
    heading_perturbation: float = 0.08  # rad
    speed_perturbation: tuple[float, float] = (0.8, 1.15)


@dataclass(frozen=True)
class WorldConfig:
    location: str = "us-nv-las-vegas-strip"
    log_duration_s: float = 20.0
    roads: RoadConfig = field(default_factory=RoadConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    sensors: SensorSettings = field(default_factory=SensorSettings)
    splits: SplitSettings = field(default_factory=SplitSettings)
    cameras: bool = True

    def with_(self, **changes) -> "WorldConfig":
        return replace(self, **changes)


PRESETS: dict[str, WorldConfig] = {
    "default": WorldConfig(),
    # Tests: short logs, tiny images, sparse traffic; still long enough for a navhard two-stage mapping
    # (4 history + 8 first-stage + 8 second-stage frames).
    "tiny": WorldConfig(
        log_duration_s=11.0,
        traffic=TrafficConfig(vehicles=(8, 10), cyclists=(1, 1), pedestrians=(3, 4), static_objects=(2, 3),
                              parked_cars=(1, 2), warmup_s=5.0),
        sensors=SensorSettings(width=32, height=18, lidar_beams=4, lidar_azimuths=90),
        splits=SplitSettings(navtest_frame_interval=4, two_stage_variants=2),
    ),
    "large": WorldConfig(log_duration_s=40.0, sensors=SensorSettings(width=256, height=144, lidar_beams=32,
                                                                      lidar_azimuths=720)),
}


def preset(name: str) -> WorldConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown world preset {name!r}; known: {sorted(PRESETS)}") from None
