"""Pipeline settings: one frozen dataclass, two presets. ``default`` fits 10 minutes on 2 CPU cores by trading
model size and budgets; ``full`` is the paper-sized run for a GPU machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class WorldStage:
    preset: str = "default"
    test_logs: int = 4
    train_logs: int = 6
    mappings_per_log: int = 3  # navhard mappings per test log: enough (now, prev) pairs for a stable EPDMS
    seed: int = 0


@dataclass(frozen=True)
class ILStage:
    config: str = "small"
    time_budget_s: float = 150.0  # training stops with a usable checkpoint after this long
    epochs: int = 0  # 0: the config's own
    seed: int = 0


@dataclass(frozen=True)
class LabelStage:
    vocabulary: int = 256
    perturbations: int = 64
    policy_samples: int = 0  # IL-policy samples per scene (costs an IL forward pass per scene)


@dataclass(frozen=True)
class RWMStage:
    preset: str = "default"
    encoder: str = "raster"
    steps: int = 400
    seed: int = 0


@dataclass(frozen=True)
class RLStage:
    iterations: int = 12
    reward: str = "rwm"
    scenes_per_iteration: int = 16
    samples_per_scene: int = 2
    seed: int = 0


@dataclass(frozen=True)
class PipelineConfig:
    name: str = "default"
    world: WorldStage = field(default_factory=WorldStage)
    il: ILStage = field(default_factory=ILStage)
    labels: LabelStage = field(default_factory=LabelStage)
    rwm: RWMStage = field(default_factory=RWMStage)
    rl: RLStage = field(default_factory=RLStage)
    eval_split: str = "navhard_two_stage"
    train_split: str = "navtrain"
    traffic: str = "log_replay"
    baselines: tuple[str, ...] = ("constant_velocity", "ego_mlp", "pdm_closed", "human")
    workers: int = 1
    bootstrap: int = 2000

    def to_dict(self) -> dict:
        return asdict(self)


PIPELINE_PRESETS: dict[str, PipelineConfig] = {
    "default": PipelineConfig(),
    "full": PipelineConfig(
        name="full",
        world=WorldStage(preset="large", test_logs=12, train_logs=48, mappings_per_log=6),
        il=ILStage(config="full", time_budget_s=0.0),
        labels=LabelStage(vocabulary=8192, perturbations=256, policy_samples=64),
        rwm=RWMStage(encoder="il", steps=20_000),
        rl=RLStage(iterations=500, scenes_per_iteration=64, samples_per_scene=4),
        traffic="idm",
        workers=8,
    ),
}


def pipeline_preset(name: str, **overrides) -> PipelineConfig:
    if name not in PIPELINE_PRESETS:
        raise ValueError(f"unknown pipeline preset {name!r}; known: {', '.join(sorted(PIPELINE_PRESETS))}")
    return replace(PIPELINE_PRESETS[name], **overrides)
