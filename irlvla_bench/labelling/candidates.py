"""Candidate trajectories of a scene: a k-means vocabulary, perturbations of the expert, IL-policy samples.

The mix decides what the reward world model sees and so how balanced its labels are: vocabulary entries cover
the space of plausible manoeuvres (most of them wrong for a given scene: off the road, too fast, uncomfortable),
perturbations crowd the decision boundaries around the expert (a lane offset that just touches the kerb, a
speed-up that just fails comfort), and IL samples are what PPO will actually ask about.

Every random draw comes from a generator seeded by ``sha256(seed, token)``, so a scene's candidates are a pure
function of (scene, config, vocabulary) whatever process, order or machine labels it.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from irlvla_bench.labelling import trajectories as tr
from irlvla_bench.types import ScoringCase

SOURCES = ("reference", "human", "vocabulary", "perturbation", "il")
# An IL sampler: (case, number of samples, seed) -> (n, 8, 3) ego-frame poses.
ILSampler = Callable[[ScoringCase, int, int], np.ndarray]


@dataclass(frozen=True)
class PerturbationConfig:
    """Ranges of the expert perturbations; each candidate composes all four families with random strengths.

    Half of them (``small_fraction``) are drawn at ``small_scale`` of the ranges: near-expert candidates that sit
    on the metrics' decision boundaries, where a reward model is most often wrong.
    """

    speed_scale: tuple[float, float] = (0.0, 1.6)  # multiplies the expert's distance travelled
    speed_ramp: float = 0.5  # the scale may change linearly over the horizon by up to this much
    lateral_m: float = 4.5  # final lateral offset (a lane is 3.5 m)
    yaw_rate: float = 0.3  # rad/s added turn rate
    noise_m: float = 0.5  # per-pose position noise (comfort breakers)
    small_fraction: float = 0.5
    small_scale: float = 0.25


@dataclass(frozen=True)
class CandidateConfig:
    vocabulary_per_scene: int | None = None  # None: every vocabulary entry; else a seeded subset per scene
    perturbations: int = 256
    il_samples: int = 0
    il_sampler: str | None = None  # "package.module:function" with the ``ILSampler`` signature
    include_reference: bool = True  # the PDM-Closed reference (the RWM needs it for the EP normaliser)
    include_human: bool = True  # the logged human future (original frames)
    seed: int = 0
    perturbation: PerturbationConfig = field(default_factory=PerturbationConfig)


@dataclass(frozen=True)
class Candidates:
    poses: np.ndarray  # (N, 8, 3)
    sources: tuple[str, ...]  # one of SOURCES per candidate
    source_index: np.ndarray  # (N,) index within its source (vocabulary entry, perturbation number, ...)

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(f"{s}:{int(i)}" for s, i in zip(self.sources, self.source_index))


def scene_rng(seed: int, token: str, purpose: str) -> np.random.Generator:
    """A generator that depends only on (seed, token, purpose): stable across processes and Python versions."""
    digest = hashlib.sha256(f"{seed}:{token}:{purpose}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ----------------------------------------------------------------------------------------------------------------
# Perturbations


def perturb(anchor: np.ndarray, count: int, rng: np.random.Generator, cfg: PerturbationConfig) -> np.ndarray:
    """``count`` variants of one (8, 3) trajectory: speed profile, lateral offset, turn rate and noise."""
    if count <= 0:
        return np.zeros((0, 8, 3))
    scale = np.where(rng.random(count) < cfg.small_fraction, cfg.small_scale, 1.0)
    t = tr.POSE_TIMES_S / tr.POSE_TIMES_S[-1]  # (8,) in (0, 1]
    base = np.broadcast_to(anchor, (count, 8, 3))

    # Speed: the distance travelled by time t is scaled by a factor that ramps linearly over the horizon.
    lo, hi = cfg.speed_scale
    start = 1.0 + (rng.uniform(lo, hi, count) - 1.0) * scale
    ramp = rng.uniform(-cfg.speed_ramp, cfg.speed_ramp, count) * scale
    factor = np.clip(start[:, None] + ramp[:, None] * t[None], 0.0, None)
    s = tr.arc_lengths(base) * factor
    # A slower profile must still be monotone in distance (a car does not reverse along its path).
    s = np.maximum.accumulate(s, axis=1)
    poses = tr.resample_along_path(np.ascontiguousarray(base), s)

    # Lateral offset: a smooth (smoothstep) shift along the path normal, like a lane change or a drift.
    offset = rng.uniform(-cfg.lateral_m, cfg.lateral_m, count) * scale
    onset = rng.uniform(0.0, 0.5, count)
    u = np.clip((t[None] - onset[:, None]) / np.maximum(1.0 - onset[:, None], 1e-3), 0.0, 1.0)
    shift = offset[:, None] * u * u * (3.0 - 2.0 * u)
    normal = poses[..., 2] + np.pi / 2.0
    poses[..., 0] += shift * np.cos(normal)
    poses[..., 1] += shift * np.sin(normal)

    # Turn rate: rotate the path about the origin progressively (a steering bias).
    omega = rng.uniform(-cfg.yaw_rate, cfg.yaw_rate, count) * scale
    angle = omega[:, None] * tr.POSE_TIMES_S[None] / 2.0
    c, si = np.cos(angle), np.sin(angle)
    x, y = poses[..., 0].copy(), poses[..., 1].copy()
    poses[..., 0] = c * x - si * y
    poses[..., 1] = si * x + c * y
    poses[..., 2] += 2.0 * angle

    # Noise: independent per pose, only on some candidates (comfort violations without a geometric cause).
    noisy = rng.random(count) < 0.3
    sigma = rng.uniform(0.0, cfg.noise_m, count) * scale * noisy
    poses[..., :2] += rng.normal(size=(count, 8, 2)) * sigma[:, None, None]
    poses[..., 2] = tr.path_headings(poses[..., :2], poses[..., 2])
    return poses


# ----------------------------------------------------------------------------------------------------------------
# Vocabulary: k-means on training trajectories


def augment(trajectories: np.ndarray, per_trajectory: int, seed: int, cfg: PerturbationConfig) -> np.ndarray:
    """The training trajectories plus ``per_trajectory`` perturbed copies of each (a small world has far fewer
    expert trajectories than a vocabulary of thousands of centres needs)."""
    rng = np.random.default_rng(seed)
    out = [np.asarray(trajectories, dtype=np.float64)]
    for anchor in trajectories:
        out.append(perturb(anchor, per_trajectory, rng, cfg))
    return np.concatenate(out, axis=0)


def _features(poses: np.ndarray, heading_weight: float) -> np.ndarray:
    flat = np.concatenate([poses[..., :2], heading_weight * poses[..., 2:3]], axis=-1)
    return flat.reshape(len(poses), -1)


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return (np.sum(points**2, axis=1)[:, None] - 2.0 * points @ centres.T + np.sum(centres**2, axis=1)[None, :])


def _assign(points: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    labels = np.empty(len(points), dtype=np.int64)
    dist = np.empty(len(points))
    for i in range(0, len(points), chunk):
        d = _squared_distances(points[i:i + chunk], centres)
        labels[i:i + chunk] = np.argmin(d, axis=1)
        dist[i:i + chunk] = d[np.arange(len(d)), labels[i:i + chunk]]
    return labels, np.maximum(dist, 0.0)


def kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 25) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; deterministic for a seed. Empty clusters are re-seeded at the
    points farthest from their centres, so exactly ``k`` distinct centres come back."""
    if k > len(points):
        raise ValueError(f"k-means with k={k} needs at least k points, got {len(points)}")
    rng = np.random.default_rng(seed)
    centres = np.empty((k, points.shape[1]))
    centres[0] = points[rng.integers(len(points))]
    closest = np.sum((points - centres[0]) ** 2, axis=1)
    for i in range(1, k):
        total = closest.sum()
        index = rng.choice(len(points), p=closest / total) if total > 0 else rng.integers(len(points))
        centres[i] = points[index]
        closest = np.minimum(closest, np.sum((points - centres[i]) ** 2, axis=1))
    for _ in range(iterations):
        labels, dist = _assign(points, centres)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centres)
        np.add.at(sums, labels, points)
        empty = np.flatnonzero(counts == 0)
        new = sums / np.maximum(counts, 1)[:, None]
        if len(empty):
            new[empty] = points[np.argsort(-dist, kind="stable")[: len(empty)]]
        if np.allclose(new, centres):
            break
        centres = new
    return centres


def fit_vocabulary(trajectories: np.ndarray, size: int, *, seed: int = 0, augment_per_trajectory: int | None = None,
                   heading_weight: float = 5.0, perturbation: PerturbationConfig = PerturbationConfig()) -> np.ndarray:
    """A (size, 8, 3) vocabulary: k-means centres of the (augmented) training trajectories, ordered by the
    distance they travel (ties by lateral end point), headings re-derived from the centre's path."""
    if not 1 <= size <= 65536:
        raise ValueError(f"vocabulary size must be in [1, 65536], got {size}")
    trajectories = np.asarray(trajectories, dtype=np.float64)
    per = augment_per_trajectory
    if per is None:
        per = max(0, int(np.ceil(20 * size / max(len(trajectories), 1))) - 1)
    pool = augment(trajectories, per, seed, perturbation) if per > 0 else trajectories
    centres = kmeans(_features(pool, heading_weight), size, seed)
    poses = centres.reshape(size, 8, 3)
    poses[..., 2] /= heading_weight
    poses[..., 2] = tr.path_headings(poses[..., :2], poses[..., 2])
    order = np.lexsort((poses[:, -1, 1], tr.arc_lengths(poses)[:, -1]))
    return np.ascontiguousarray(poses[order])


# ----------------------------------------------------------------------------------------------------------------
# The candidates of one scene


def resolve_il_sampler(spec: str | None) -> ILSampler | None:
    """``"package.module:function"`` -> the callable (imported lazily: the IL policy pulls in torch)."""
    if spec is None:
        return None
    module_name, sep, attribute = spec.partition(":")
    if not sep or not attribute:
        raise ValueError(f"il_sampler must look like 'package.module:function', got {spec!r}")
    return getattr(importlib.import_module(module_name), attribute)


def build_candidates(case: ScoringCase, vocabulary: np.ndarray, cfg: CandidateConfig,
                     il_sampler: ILSampler | None = None) -> Candidates:
    """The scene's candidates in a fixed order: reference, human, vocabulary, perturbations, IL samples."""
    parts: list[np.ndarray] = []
    sources: list[str] = []
    indices: list[np.ndarray] = []

    def add(poses: np.ndarray, source: str, index: Sequence[int]) -> None:
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 8, 3)
        parts.append(poses)
        sources.extend([source] * len(poses))
        indices.append(np.asarray(index, dtype=np.int64))

    if cfg.include_reference:
        add(tr.reference_poses(case)[None], "reference", [0])
    if cfg.include_human and case.human_future is not None:
        add(np.asarray(case.human_future)[None], "human", [0])
    if len(vocabulary):
        chosen = np.arange(len(vocabulary))
        if cfg.vocabulary_per_scene is not None and cfg.vocabulary_per_scene < len(vocabulary):
            rng = scene_rng(cfg.seed, case.token, "vocabulary")
            chosen = np.sort(rng.choice(len(vocabulary), cfg.vocabulary_per_scene, replace=False))
        add(vocabulary[chosen], "vocabulary", chosen)
    if cfg.perturbations > 0:
        anchor, _ = tr.anchor_poses(case)
        rng = scene_rng(cfg.seed, case.token, "perturbation")
        add(perturb(anchor, cfg.perturbations, rng, cfg.perturbation), "perturbation", np.arange(cfg.perturbations))
    if cfg.il_samples > 0:
        sampler = il_sampler or resolve_il_sampler(cfg.il_sampler)
        if sampler is None:
            raise ValueError("il_samples > 0 needs an il_sampler ('package.module:function' or a callable)")
        seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}:{case.token}:il".encode()).digest()[:4], "little")
        samples = np.asarray(sampler(case, cfg.il_samples, seed), dtype=np.float64)
        if samples.shape != (cfg.il_samples, 8, 3) or not np.isfinite(samples).all():
            raise ValueError(f"il_sampler returned {samples.shape} (finite: {np.isfinite(samples).all()}), "
                             f"expected ({cfg.il_samples}, 8, 3) finite poses")
        add(samples, "il", np.arange(cfg.il_samples))
    poses = np.concatenate(parts, axis=0) if parts else np.zeros((0, 8, 3))
    return Candidates(poses, tuple(sources), np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64))
