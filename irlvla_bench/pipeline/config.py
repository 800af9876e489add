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
    max_steps: int = 600
    seed: int = 0


@dataclass(frozen=True)
class LabelStage:
    vocabulary: int = 256
    perturbations: int = 64
    policy_samples: int = 16


@dataclass(frozen=True)
class RWMStage:
    encoder: str = "raster"
    epochs: int = 8
    seed: int = 0


@dataclass(frozen=True)
class RLStage:
    iterations: int = 40
    reward: str = "rwm"
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
        il=ILStage(config="full", max_steps=30_000),
        labels=LabelStage(vocabulary=8192, perturbations=256, policy_samples=64),
        rwm=RWMStage(encoder="il", epochs=30),
        rl=RLStage(iterations=500),
        traffic="idm",
        workers=8,
    ),
}


def pipeline_preset(name: str, **overrides) -> PipelineConfig:
    if name not in PIPELINE_PRESETS:
        raise ValueError(f"unknown pipeline preset {name!r}; known: {', '.join(sorted(PIPELINE_PRESETS))}")
    return replace(PIPELINE_PRESETS[name], **overrides)
