"""Configuration of the reward world model (RWM): frozen dataclasses, no torch.

Checkpoints store ``asdict(RWMConfig)`` and rebuild everything from it, so a checkpoint is all ``RewardModel``
needs. Every per-sub-metric loss weight lives in ``LossWeights``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from irlvla_bench.dataclass_dict import dataclass_from_dict
from irlvla_bench.types import PACIFICA

ENCODER_KINDS = ("raster", "sensors", "il")


@dataclass(frozen=True)
class GridConfig:
    """Ego (rear-axle) frame BEV grid at t = 0, x forward, y left; rows index y, columns index x."""

    x_range: tuple[float, float] = (-32.0, 96.0)
    y_range: tuple[float, float] = (-64.0, 64.0)
    resolution: float = 1.0  # m per cell; the raster holds distance fields, so bilinear reads are sub-cell exact

    def shape(self) -> tuple[int, int]:
        """(rows, columns) = (ny, nx)."""
        nx = round((self.x_range[1] - self.x_range[0]) / self.resolution)
        ny = round((self.y_range[1] - self.y_range[0]) / self.resolution)
        return ny, nx


@dataclass(frozen=True)
class RasterConfig:
    """The oracle-perception raster: signed distance fields of the map, route, red lights and objects."""

    grid: GridConfig = field(default_factory=GridConfig)
    clip_m: float = 10.0  # distance fields are clipped to +-clip_m and divided by clip_m / 2
    object_times_s: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
    # How objects seen at t = 0 are drawn at later times (agents.rwm.motion): "lane_following" (vehicles and
    # cyclists along their lane at their t = 0 speed, the rest constant velocity), "constant_velocity", or
    # "logged" (their logged future: an oracle of the future, the scorer's own view; ablations only).
    object_motion: str = "lane_following"
    densify_m: float = 0.25  # boundary / centerline sampling for the nearest-point distance queries
    progress_scale_m: float = 50.0


@dataclass(frozen=True)
class SensorsConfig:
    """Camera images lifted to the ground plane (inverse perspective mapping) on the same kind of grid."""

    grid: GridConfig = field(default_factory=lambda: GridConfig(resolution=1.0))
    cameras: tuple[str, ...] = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_L2", "CAM_R0", "CAM_R1", "CAM_R2", "CAM_B0")
    min_depth_m: float = 0.5


@dataclass(frozen=True)
class ILFeaturesConfig:
    """The IL policy's scene features through ``agents.rwm.il_adapter`` (imports ``agents.vla`` lazily)."""

    checkpoint: str = ""
    grid: GridConfig = field(default_factory=lambda: GridConfig(x_range=(-32.0, 32.0), y_range=(-32.0, 32.0),
                                                                 resolution=0.5))


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "raster"  # one of ENCODER_KINDS
    raster: RasterConfig = field(default_factory=RasterConfig)
    sensors: SensorsConfig = field(default_factory=SensorsConfig)
    il: ILFeaturesConfig = field(default_factory=ILFeaturesConfig)
    cnn_channels: tuple[int, ...] = (24, 32, 48)  # light CNN over the BEV input: stride 2, 4, 8
    scene_dim: int = 64

    def grid(self) -> GridConfig:
        return {"raster": self.raster.grid, "sensors": self.sensors.grid, "il": self.il.grid}[self.kind]


@dataclass(frozen=True)
class QueryConfig:
    """Where the trajectory reads the BEV: ego-box points at ``steps`` times over 0..4 s, plus TTC projections."""

    steps: int = 21  # every 0.2 s of the 10 Hz rollout (must split its 40 intervals evenly)
    # Box points from the rear axle: rear edge, centre, front edge x left / middle / right (corners and centre
    # included, as the scorer tests them). Distance fields make the points between them readable too.
    body_lon: tuple[float, ...] = (-PACIFICA.rear_length, PACIFICA.rear_axle_to_center, PACIFICA.front_length)
    body_lat: tuple[float, ...] = (-PACIFICA.half_width, 0.0, PACIFICA.half_width)
    ttc_offsets_s: tuple[float, ...] = (0.3, 0.6, 0.9)  # NAVSIM's TTC projections


@dataclass(frozen=True)
class ModelConfig:
    step_hidden: int = 96
    temporal_hidden: int = 96
    trunk_hidden: int = 192
    kinematics_hidden: int = 64
    dropout: float = 0.0


@dataclass(frozen=True)
class LossWeights:
    """Per-sub-metric loss weights (and the composite terms): one place to change the balance."""

    no_at_fault_collisions: float = 1.0
    drivable_area_compliance: float = 1.0
    driving_direction_compliance: float = 1.0
    traffic_light_compliance: float = 1.0
    time_to_collision_within_bound: float = 1.0
    lane_keeping: float = 1.0
    history_comfort: float = 1.0
    extended_comfort: float = 1.0
    progress: float = 1.0  # smooth L1 on raw progress (EP is assembled from it, as the evaluator does)
    reference_progress: float = 0.2  # scene head used when no reference trajectory is given
    epdms: float = 2.0  # squared error of the assembled EPDMS
    ranking: float = 0.5  # within-scene listwise (ListNet) term on the assembled EPDMS
    ranking_temperature: float = 0.05
    preference: float = 0.0  # Bradley-Terry: the human trajectory preferred over every other candidate
    preference_temperature: float = 0.1


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000
    scenes_per_batch: int = 8
    candidates_per_scene: int = 96  # including the reference and human rows
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1  # 2 OpenMP threads on 2 shared cores spin each other out: 10x slower than 1
    log_every: int = 25
    checkpoint_every: int = 250
    validation_scenes: float = 0.05  # fraction of training scenes held out for the logged validation loss
    validation_every: int = 250


@dataclass(frozen=True)
class RWMConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    query: QueryConfig = field(default_factory=QueryConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.encoder.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.encoder.kind!r}")
        if self.train.candidates_per_scene < 3:
            raise ValueError("candidates_per_scene must leave room for the reference, the human and one more")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RWMConfig":
        return dataclass_from_dict(cls, data)


def preset(name: str) -> RWMConfig:
    """``default`` (the measured configuration) or ``tiny`` (tests: small grid, few steps)."""
    if name == "default":
        return RWMConfig()
    if name == "tiny":
        grid = GridConfig(x_range=(-16.0, 48.0), y_range=(-32.0, 32.0), resolution=2.0)
        return RWMConfig(
            encoder=EncoderConfig(raster=RasterConfig(grid=grid, object_times_s=(0.0, 1.0, 2.0, 3.0, 4.0)),
                                  sensors=SensorsConfig(grid=grid), cnn_channels=(8, 16), scene_dim=16),
            query=QueryConfig(steps=9),
            model=ModelConfig(step_hidden=32, temporal_hidden=32, trunk_hidden=64, kinematics_hidden=16),
            train=TrainConfig(steps=30, scenes_per_batch=2, candidates_per_scene=16, log_every=5,
                              checkpoint_every=10, validation_every=10, warmup_steps=5, validation_scenes=0.0),
        )
    raise ValueError(f"unknown RWM preset {name!r}; known: default, tiny")
