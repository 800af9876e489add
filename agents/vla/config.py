"""Configuration of the IL VLA policy: frozen dataclasses, two presets (``small`` for 2 CPU cores, ``full`` for the
paper's scale on GPUs) built from one code path. No torch here (the CLI reads presets without importing torch).

Every number that shapes the model or the training lives here once; checkpoints store ``asdict(VLAConfig)`` and
rebuild the model from it, so a checkpoint is all an agent needs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from irlvla_bench.dataclass_dict import dataclass_from_dict

# VoVNetV2 stage specifications (stem, per-stage 3x3 width, per-stage output width, 3x3 layers per OSA block,
# OSA blocks per stage), as published with VoVNet / CenterMask (the ``V-19-slim-eSE``, ``V-39-eSE``,
# ``V-99-eSE`` specs of vovnet-detectron2).
VOVNET_SPECS: dict[str, dict[str, tuple[int, ...] | int]] = {
    "V-19-slim": {"stem": (64, 64, 128), "stage_conv": (64, 80, 96, 112), "stage_out": (112, 256, 384, 512),
                  "layers_per_block": 3, "blocks_per_stage": (1, 1, 1, 1)},
    "V-39": {"stem": (64, 64, 128), "stage_conv": (128, 160, 192, 224), "stage_out": (256, 512, 768, 1024),
             "layers_per_block": 5, "blocks_per_stage": (1, 1, 2, 2)},
    "V-99": {"stem": (64, 64, 128), "stage_conv": (128, 160, 192, 224), "stage_out": (256, 512, 768, 1024),
             "layers_per_block": 5, "blocks_per_stage": (1, 3, 9, 3)},
}

SEG_CLASSES = ("drivable_area", "lanes", "crossings", "vehicles", "pedestrians", "static_objects")
# Detection classes (index 0..3); the classifier has one more logit for "no object".
DET_CLASSES = ("vehicle", "pedestrian", "bicycle", "static")
# Log annotation category -> detection class (``ego`` is never a target).
CATEGORY_TO_DET = {"vehicle": 0, "pedestrian": 1, "bicycle": 2, "traffic_cone": 3, "barrier": 3, "czone_sign": 3,
                   "generic_object": 3}


@dataclass(frozen=True)
class BackboneConfig:
    """A VoVNetV2. ``arch`` names a published spec; ``custom`` uses the explicit widths below (the small preset)."""

    arch: str = "V-99"
    stem: tuple[int, int, int] = (64, 64, 128)
    stage_conv: tuple[int, ...] = (128, 160, 192, 224)
    stage_out: tuple[int, ...] = (256, 512, 768, 1024)
    layers_per_block: int = 5
    blocks_per_stage: tuple[int, ...] = (1, 3, 9, 3)
    # Stages used: the small preset stops early (stride 16) because 48-pixel-high images have nothing left at 32.
    num_stages: int = 4
    # Strides (4 = stage 2, 8, 16, 32) fused into the single feature map the BEV lifts, and its stride.
    fuse_strides: tuple[int, ...] = (16, 32)
    out_stride: int = 16
    neck_channels: int = 256

    def resolved(self) -> "BackboneConfig":
        """The published widths for a named ``arch`` (the fields above win for ``custom``)."""
        if self.arch == "custom":
            return self
        if self.arch not in VOVNET_SPECS:
            raise ValueError(f"unknown VoVNet arch {self.arch!r}; known: {sorted(VOVNET_SPECS)} or 'custom'")
        spec = VOVNET_SPECS[self.arch]
        return replace(self, stem=tuple(spec["stem"]), stage_conv=tuple(spec["stage_conv"]),
                       stage_out=tuple(spec["stage_out"]), layers_per_block=int(spec["layers_per_block"]),
                       blocks_per_stage=tuple(spec["blocks_per_stage"]))


@dataclass(frozen=True)
class ImageConfig:
    """Every camera is cropped (top rows: sky) and resized to ``height x width``; intrinsics follow."""

    cameras: tuple[str, ...] = ("CAM_F0", "CAM_L0", "CAM_L1", "CAM_R0", "CAM_R1", "CAM_B0")
    height: int = 256
    width: int = 704
    crop_top: float = 0.0  # fraction of the source image height removed from the top before resizing
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BEVConfig:
    """Ego (rear-axle) frame grid, x forward and y left; rows index x, columns index y."""

    x_range: tuple[float, float] = (-32.0, 32.0)
    y_range: tuple[float, float] = (-32.0, 32.0)
    resolution: float = 0.5  # m per cell
    depth_range: tuple[float, float, float] = (1.0, 61.0, 1.0)  # start, stop, step [m] of the depth bins
    channels: int = 64  # lifted context channels
    # Flat-ground prior on the depth distribution (log-Gaussian around the ground-plane depth of each pixel,
    # sigma in metres, 0 disables). Why: the net then only learns where objects stand above the ground, which
    # makes lift-splat learn in minutes instead of hours.
    ground_prior_sigma: float = 4.0
    encoder_channels: tuple[int, ...] = (128, 256)  # light BEV encoder: full resolution, then one stride-2 level each
    token_stride: int = 4  # BEV cells per token side for the attention heads (after the encoder)

    def grid_shape(self) -> tuple[int, int]:
        nx = round((self.x_range[1] - self.x_range[0]) / self.resolution)
        ny = round((self.y_range[1] - self.y_range[0]) / self.resolution)
        return nx, ny

    def num_depth_bins(self) -> int:
        start, stop, step = self.depth_range
        return int(round((stop - start) / step))


@dataclass(frozen=True)
class HeadsConfig:
    d_model: int = 256
    num_heads: int = 8
    det_queries: int = 30
    det_layers: int = 3
    map_queries: int = 32
    map_points: int = 10
    map_layers: int = 2
    dropout: float = 0.0


@dataclass(frozen=True)
class CommandConfig:
    backend: str = "head"  # "head" (trained classifier on the scene tokens) or "language" (local HF checkpoint)
    embed_dim: int = 64
    hidden: int = 256
    # Probability of conditioning the planner on the derived (ground-truth) command instead of the head's
    # prediction while training; 0 keeps training and test conditions identical.
    teacher_forcing: float = 0.0


@dataclass(frozen=True)
class PlannerConfig:
    num_anchors: int = 20
    num_poses: int = 8
    train_timesteps: int = 1000  # DDPM schedule length (linear betas)
    beta_start: float = 1e-4
    beta_end: float = 0.02
    truncation_step: int = 50  # anchors are noised to at most this step (truncated diffusion)
    inference_steps: int = 2
    decoder_layers: int = 2  # cascade depth
    d_model: int = 256
    num_heads: int = 8
    ffn_mult: int = 2
    # Normalised trajectory = (pose - offset) / scale, per (x, y, heading): about [-1, 1] for 4 s of driving.
    norm_offset: tuple[float, float, float] = (30.0, 0.0, 0.0)
    norm_scale: tuple[float, float, float] = (30.0, 20.0, 1.0)
    # The cascade also samples the segmentation probabilities (detached) at the trajectory points: a direct,
    # supervised "is this point drivable / a lane / occupied" signal that the planner can use from the first epochs.
    read_segmentation: bool = False
    # Where the cascade samples around each trajectory point: lateral offsets [m] perpendicular to the point's
    # heading (fixed deformable-sampling points, as DiffusionDrive samples around its points). A row of samples
    # across the path shows where the road and the lane centre lie relative to it, which is what steering needs.
    lateral_offsets: tuple[float, ...] = (0.0,)
    min_std: float = 0.01  # DPPO's floor of the per-step Gaussian std (normalised units)
    test_noise: bool = True  # seeded noise on the anchors at test time (DiffusionDrive); False starts at the anchors
    # Test-time re-ranking with the perception outputs: candidates leaving the predicted drivable area or
    # running into predicted agents lose confidence (log-space penalties, 0 disables).
    drivable_penalty: float = 0.0
    collision_penalty: float = 0.0


@dataclass(frozen=True)
class AugmentConfig:
    """Start-pose augmentation in the BEV frame with recovery targets (``augment.py``); navhard's second stage
    starts 0.3-1.2 m beside the logged pose with ~0.08 rad heading noise, which logged driving never shows."""

    probability: float = 0.7  # share of the (moving) samples of a batch that get shifted
    lateral: float = 1.2  # m, uniform in [-lateral, lateral]
    heading: float = 0.08  # rad, Gaussian std (clipped at 2.5 std)
    recovery_s: float = 2.5  # the target merges back into the logged future within this time
    min_speed: float = 1.0  # m/s: slower samples are never shifted


@dataclass(frozen=True)
class LossWeights:
    anchor_cls: float = 10.0  # focal loss on the anchor confidences (DiffusionDrive)
    trajectory: float = 8.0  # L1 on the positive mode
    heading: float = 1.0  # relative weight of the heading column inside the trajectory L1
    segmentation: float = 1.0
    det_cls: float = 1.0
    det_box: float = 1.0
    map_cls: float = 0.5
    map_pts: float = 1.0
    command: float = 0.5
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32  # global (split across DDP ranks)
    lr: float = 2e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    min_lr_ratio: float = 0.05  # cosine floor as a fraction of lr
    grad_clip: float = 5.0
    seed: int = 0
    mixed_precision: bool = True  # used on GPU only (bf16 where supported)
    log_every: int = 10
    num_threads: int = 0  # torch intra-op threads on CPU, 0: leave torch's default
    time_budget_s: float = 0.0  # stop (with a checkpoint) once exceeded, 0: no budget
    # "wall": elapsed time; "cpu": CPU time of the training process. On a shared machine the CPU time measures
    # the work itself (what an idle machine would need), the wall clock also counts everyone else's processes.
    budget_clock: str = "wall"


@dataclass(frozen=True)
class VLAConfig:
    name: str = "full"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    bev: BEVConfig = field(default_factory=BEVConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    command: CommandConfig = field(default_factory=CommandConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    train: TrainConfig = field(default_factory=TrainConfig)
    history_frames: int = 4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_(self, **changes) -> "VLAConfig":
        return replace(self, **changes)


def small_config() -> VLAConfig:
    """Trains on the procedural world on 2 CPU cores in minutes: three front cameras cropped to the road
    (48 x 128), a narrow VoVNet (V-19-slim topology, three stages), a 1 m BEV reaching 48 m ahead."""
    return VLAConfig(
        name="small",
        # Lift at stride 4: a 48-row image has only ~4 feature rows below the horizon at stride 8, which leaves the
        # BEV empty beyond ~20 m; at stride 4 the rows reach 10-30 m ahead.
        backbone=BackboneConfig(arch="custom", stem=(16, 16, 32), stage_conv=(16, 24, 32), stage_out=(48, 64, 96),
                                layers_per_block=3, blocks_per_stage=(1, 1, 1), num_stages=3,
                                fuse_strides=(4, 8, 16), out_stride=4, neck_channels=32),
        image=ImageConfig(cameras=("CAM_F0", "CAM_L0", "CAM_R0"), height=48, width=128, crop_top=1.0 / 3.0),
        bev=BEVConfig(x_range=(-16.0, 48.0), y_range=(-32.0, 32.0), resolution=1.0, depth_range=(2.0, 50.0, 2.0),
                      channels=24, ground_prior_sigma=3.0, encoder_channels=(16, 48), token_stride=8),
        heads=HeadsConfig(d_model=64, num_heads=4, det_queries=30, det_layers=1, map_queries=16, map_points=8,
                          map_layers=1),
        command=CommandConfig(embed_dim=16, hidden=64),
        planner=PlannerConfig(num_anchors=20, d_model=64, num_heads=4, decoder_layers=2, read_segmentation=True,
                              lateral_offsets=(-3.0, -1.5, 0.0, 1.5, 3.0)),
        # One thread: on a 2-core machine shared with other jobs, two OpenMP threads spin on each other and run
        # several times slower than one (measured); the budget counts CPU time for the same reason.
        train=TrainConfig(epochs=12, batch_size=16, lr=2e-3, weight_decay=1e-4, warmup_steps=50, num_threads=1,
                          mixed_precision=False, log_every=10, time_budget_s=14 * 60.0, budget_clock="cpu"),
    )


def full_config() -> VLAConfig:
    """The paper's scale: six cameras at 256 x 704, VoVNet-99, 128 x 128 BEV over 64 m at 0.5 m."""
    return VLAConfig(name="full", backbone=BackboneConfig(arch="V-99").resolved(),
                     planner=PlannerConfig(read_segmentation=True, lateral_offsets=(-3.0, -1.5, 0.0, 1.5, 3.0)))


PRESETS = {"small": small_config, "full": full_config}


def preset(name: str) -> VLAConfig:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown VLA config {name!r}; known: {sorted(PRESETS)}") from None


def config_from_dict(data: dict[str, Any]) -> VLAConfig:
    return dataclass_from_dict(VLAConfig, data)


def with_overrides(config: VLAConfig, **train_overrides) -> VLAConfig:
    """A copy with some ``TrainConfig`` fields replaced (None values are ignored)."""
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    return replace(config, train=replace(config.train, **changes)) if changes else config
