"""The agent contract checker: run an agent on a few inputs and report every way it breaks the contract.

``check_agent(factory, inputs)`` catches
* outputs that are not a ``Trajectory`` of (8, 3) finite poses (wrong pose count or shape, NaN / inf);
* non-determinism for a fixed seed: the same instance seeded, run, re-seeded and run again, and a fresh instance
  with the same seed, must give identical poses; the batched form must agree with the single form;
* sensor requests the agent does not use: each requested modality is perturbed (every image of a requested camera
  replaced, the point clouds moved, the older ego statuses changed, each requested sensor frame's sensors
  replaced); when the output does not move on any input the agent "requests X but does not use it" and should
  not ask for it (loading sensors is the expensive part of an evaluation).

Inputs are "rich" ``AgentInput``s (all cameras and LiDAR at every history frame, plus the scoring case); each
agent sees only what its ``SensorConfig`` asks for (``agents.base.restrict_input``), and only privileged agents
see the case. ``synthetic_inputs`` builds such inputs in memory (fast tests), ``contract_inputs`` from a
generated or real NAVSIM-layout dataset.

Exceptions raised by the agent other than ``TrajectoryError`` propagate with the agent's own traceback: they are
bugs to look at, not findings to summarise.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from agents.base import (CAMERA_NAMES, NUM_POSES, Agent, AgentInput, CameraImage, EgoStatus, SensorConfig, Trajectory,
                         TrajectoryError, TrajectoryShapeError, TrajectoryValueError, restrict_input)

BATCH_TOLERANCE = 1e-3  # [m, rad]: batched float32 inference may round differently (matmul blocking); 1 mm is
# far below anything a scorer sees and far above float32 noise, while a batching bug (rows mixed up) is metres


# ----------------------------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class Problem:
    kind: str  # "type" | "shape" | "non_finite" | "trajectory" | "nondeterministic" | "batch" | "unused_sensor"
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class ContractReport:
    agent: str
    inputs: int
    problems: list[Problem] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # what was run, in order (skipped checks say why)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def messages(self) -> list[str]:
        return [p.message for p in self.problems]

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def add(self, kind: str, message: str) -> None:
        self.problems.append(Problem(kind, message))

    def __str__(self) -> str:
        head = f"agent {self.agent!r} on {self.inputs} input(s): " + ("passed" if self.passed else "FAILED")
        return "\n".join([head] + [f"  - [{p.kind}] {p.message}" for p in self.problems])


class AgentContractError(AssertionError):
    def __init__(self, report: ContractReport):
        self.report = report
        super().__init__(str(report))


# ----------------------------------------------------------------------------------------------------------------
# Running the agent


def _validate(result, failures: dict[str, list[str]], token: str) -> np.ndarray | None:
    """The (8, 3) poses of one result, or None (the failure is collected by kind)."""
    if not isinstance(result, Trajectory):
        failures.setdefault("type", []).append(f"{token}: returned {type(result).__name__}, expected Trajectory")
        return None
    # Re-check: a Trajectory can be built around its validation (object.__new__, object.__setattr__).
    poses = np.asarray(result.poses)
    if poses.shape != (NUM_POSES, 3):
        failures.setdefault("shape", []).append(f"{token}: poses of shape {poses.shape}, expected ({NUM_POSES}, 3)")
        return None
    if not np.isfinite(poses).all():
        failures.setdefault("non_finite", []).append(f"{token}: NaN or inf in the poses")
        return None
    return np.array(poses, dtype=np.float64)


_KIND_TEXT = {
    "type": "does not return a Trajectory",
    "shape": "wrong pose count or shape (NAVSIM needs 8 poses of (x, y, heading))",
    "non_finite": "returns NaN or inf poses",
    "trajectory": "returns an invalid trajectory",
}


def _run(agent: Agent, views: Sequence[AgentInput], report: ContractReport, *,
         record: bool) -> list[np.ndarray | None]:
    failures: dict[str, list[str]] = {}
    out = []
    for view in views:
        try:
            result = agent.compute_trajectory(view)
        except TrajectoryShapeError as exc:
            failures.setdefault("shape", []).append(f"{view.token}: {exc}")
            out.append(None)
            continue
        except TrajectoryValueError as exc:
            failures.setdefault("non_finite", []).append(f"{view.token}: {exc}")
            out.append(None)
            continue
        except TrajectoryError as exc:
            failures.setdefault("trajectory", []).append(f"{view.token}: {exc}")
            out.append(None)
            continue
        out.append(_validate(result, failures, view.token))
    if record:
        for kind, details in failures.items():
            report.add(kind, f"{_KIND_TEXT[kind]} on {len(details)}/{len(views)} input(s); first: {details[0]}")
    return out


def _difference(a: list[np.ndarray | None], b: list[np.ndarray | None], views: Sequence[AgentInput],
                tolerance: float = 0.0) -> str | None:
    """Where two runs differ (first token and the largest difference), or None."""
    bad = []
    for x, y, view in zip(a, b, views):
        if x is None or y is None:
            if (x is None) != (y is None):
                bad.append((view.token, float("inf")))
            continue
        diff = float(np.max(np.abs(x - y)))
        if diff > tolerance:
            bad.append((view.token, diff))
    if not bad:
        return None
    return f"{len(bad)}/{len(views)} input(s) differ, first {bad[0][0]} by up to {bad[0][1]:.3g}"


# ----------------------------------------------------------------------------------------------------------------
# Perturbations: each yields alternative views where one requested modality is replaced


def _inverted(image: np.ndarray) -> np.ndarray:
    return (255 - np.asarray(image, dtype=np.int16)).astype(np.uint8)


def _noise_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=np.shape(image), dtype=np.uint8)


def _replace_camera(view: AgentInput, name: str, make: Callable[[np.ndarray], np.ndarray]) -> AgentInput:
    cameras = tuple({k: (replace(c, image=make(c.image)) if k == name else c) for k, c in frame.items()}
                    for frame in view.cameras)
    return replace(view, cameras=cameras)


def _moved_points(points: np.ndarray) -> np.ndarray:
    p = np.array(points, dtype=np.float64, copy=True)
    p[0] = p[0] + 5.0  # 5 m forward
    p[1] = -p[1]  # mirrored left/right
    if len(p) > 3:
        p[3] = p[3][::-1]  # intensities shuffled
    return p.astype(np.asarray(points).dtype)


def _random_points(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    p = np.array(points, dtype=np.float64, copy=True)
    n = p.shape[1]
    p[0:2] = rng.uniform(-40.0, 40.0, size=(2, n))
    p[2] = rng.uniform(-2.0, 3.0, size=n)
    if len(p) > 3:
        p[3] = rng.uniform(0.0, 255.0, size=n)
    return p.astype(np.asarray(points).dtype)


def _replace_lidar(view: AgentInput, make: Callable[[np.ndarray], np.ndarray],
                   frames: set[int] | None = None) -> AgentInput:
    lidars = tuple(None if p is None else (make(p) if frames is None or i in frames else p)
                   for i, p in enumerate(view.lidars))
    return replace(view, lidars=lidars)


def _shifted_status(status: EgoStatus, scale: float) -> EgoStatus:
    return EgoStatus(
        pose=np.asarray(status.pose, dtype=np.float64) + scale * np.array([-2.0, 1.0, 0.1]),
        velocity=np.asarray(status.velocity, dtype=np.float64) * (1.0 + 0.5 * scale) + scale,
        acceleration=np.asarray(status.acceleration, dtype=np.float64) + scale * np.array([1.0, -0.5]),
        driving_command=np.roll(np.asarray(status.driving_command), 1),
    )


def _replace_history(view: AgentInput, scale: float) -> AgentInput:
    older = tuple(_shifted_status(s, scale) for s in view.ego_statuses[:-1])
    return replace(view, ego_statuses=older + (view.ego_statuses[-1],))


def _replace_frame_sensors(view: AgentInput, frame: int, rng: np.random.Generator) -> AgentInput:
    cameras = tuple({k: replace(c, image=_noise_image(c.image, rng)) for k, c in cams.items()} if i == frame else cams
                    for i, cams in enumerate(view.cameras))
    return _replace_lidar(replace(view, cameras=cameras), lambda p: _random_points(p, rng), {frame})


@dataclass(frozen=True)
class _Perturbation:
    message: str  # the problem when no variant changes the output
    variants: tuple[Callable[[AgentInput], AgentInput], ...]  # tried in order until one changes the output


def _perturbations(sensors: SensorConfig, seed: int) -> Iterator[_Perturbation]:
    rng = np.random.default_rng(seed + 7919)
    for name in sensors.cameras:
        yield _Perturbation(
            f"requests camera {name} but does not use it (output unchanged when every {name} image is replaced)",
            (lambda v, n=name: _replace_camera(v, n, _inverted),
             lambda v, n=name: _replace_camera(v, n, lambda im: _noise_image(im, rng))))
    if sensors.lidar:
        yield _Perturbation(
            "requests LiDAR but does not use it (output unchanged when the point clouds are moved or replaced)",
            (lambda v: _replace_lidar(v, _moved_points), lambda v: _replace_lidar(v, lambda p: _random_points(p, rng))))
    if sensors.history_frames > 1:
        yield _Perturbation(
            f"requests {sensors.history_frames} history frames but uses only the current one (output unchanged when "
            f"the {sensors.history_frames - 1} older ego statuses are perturbed); request history_frames=1",
            (lambda v: _replace_history(v, 1.0), lambda v: _replace_history(v, -3.0)))
    frames = sensors.frames_with_sensors
    if sensors.uses_sensors and len(frames) > 1:
        for frame in frames:
            yield _Perturbation(
                f"requests sensors at history frame {frame} but does not use them (output unchanged when they are "
                f"replaced); drop {frame} from sensor_frames",
                (lambda v, f=frame: _replace_frame_sensors(v, f, rng),))


# ----------------------------------------------------------------------------------------------------------------
# The checker


def check_agent(agent_factory: Callable[[], Agent], inputs: Sequence[AgentInput], *, seed: int = 0,
                check_sensors: bool = True) -> ContractReport:
    """Run every check on ``agent_factory()``; ``inputs`` must hold everything the agent may request."""
    if not inputs:
        raise ValueError("check_agent needs at least one input")
    agent = agent_factory()
    name = getattr(agent, "name", "") or type(agent).__name__
    report = ContractReport(agent=str(name), inputs=len(inputs))
    if not isinstance(agent, Agent):
        report.add("type", f"the factory built a {type(agent).__name__}, not an agents.base.Agent")
        return report
    if not isinstance(agent.name, str) or not agent.name:
        report.add("type", "the agent has no name (set the class attribute `name`)")
    sensors = agent.sensor_config()
    if not isinstance(sensors, SensorConfig):
        report.add("type", f"sensor_config() returned {type(sensors).__name__}, expected SensorConfig")
        return report
    views = [restrict_input(x, sensors, privileged=agent.requires_privileged) for x in inputs]

    agent.initialize()
    agent.seed(seed)
    before = len(report.problems)
    first = _run(agent, views, report, record=True)
    report.checks.append("outputs")
    if len(report.problems) > before:
        report.checks.append("determinism and sensor use skipped: the outputs themselves are invalid")
        return report

    before = len(report.problems)
    agent.seed(seed)
    where = _difference(first, _run(agent, views, report, record=False), views)
    if where:
        report.add("nondeterministic", f"non-deterministic for a fixed seed: re-seeding with seed={seed} and running "
                                       f"again changes the output ({where})")
    fresh = agent_factory()
    fresh.initialize()
    fresh.seed(seed)
    where = _difference(first, _run(fresh, views, report, record=False), views)
    if where:
        report.add("nondeterministic", f"non-deterministic for a fixed seed: a fresh instance seeded with seed={seed} "
                                       f"gives another output ({where})")
    report.checks.append("determinism")
    if len(report.problems) > before:
        # Every comparison below assumes a reproducible output; they would only repeat the finding.
        report.checks.append("batch and sensor use skipped: the output is not reproducible")
        return report

    agent.seed(seed)
    _check_batch(agent, views, first, report)
    report.checks.append("batch")

    if not check_sensors:
        return report
    for perturbation in _perturbations(sensors, seed):
        for variant in perturbation.variants:
            agent.seed(seed)
            changed = _run(agent, [variant(v) for v in views], report, record=False)
            if _difference(first, changed, views) is not None:
                break
        else:
            report.add("unused_sensor", perturbation.message)
    report.checks.append("sensor use")
    return report


def _check_batch(agent: Agent, views: Sequence[AgentInput], first: list[np.ndarray | None],
                 report: ContractReport) -> None:
    """The optional batched form must give what the single form gives (up to float32 batching noise)."""
    try:
        batched = agent.compute_trajectories(views)
    except TrajectoryError as exc:
        report.add("batch", f"the batched compute_trajectories fails where compute_trajectory does not: {exc}")
        return
    if not isinstance(batched, (list, tuple)) or len(batched) != len(views):
        size = len(batched) if hasattr(batched, "__len__") else "?"
        report.add("batch", f"compute_trajectories returned {type(batched).__name__} of length {size} for "
                            f"{len(views)} inputs")
        return
    failures: dict[str, list[str]] = {}
    poses = [_validate(r, failures, v.token) for r, v in zip(batched, views)]
    where = _difference(first, poses, views, BATCH_TOLERANCE)
    if failures or where:
        report.add("batch", "the batched compute_trajectories disagrees with compute_trajectory: "
                   + (where or "; ".join(d[0] for d in failures.values())))


def assert_agent_contract(agent_factory: Callable[[], Agent], inputs: Sequence[AgentInput], *, seed: int = 0,
                          check_sensors: bool = True) -> ContractReport:
    report = check_agent(agent_factory, inputs, seed=seed, check_sensors=check_sensors)
    if not report.passed:
        raise AgentContractError(report)
    return report


# ----------------------------------------------------------------------------------------------------------------
# Inputs


FULL_SENSORS = SensorConfig(history_frames=4, cameras=CAMERA_NAMES, lidar=True, sensor_frames=(0, 1, 2, 3))


def synthetic_inputs(n: int = 3, *, seed: int = 0, history_frames: int = 4, image_size: tuple[int, int] = (32, 18),
                     num_points: int = 256, privileged: bool = True) -> list[AgentInput]:
    """Rich inputs built in memory: random images on the OpenScene rig, random point clouds, plausible ego
    statuses, and (``privileged``) a procedural scoring case whose token is the input's token."""
    from irlvla_bench.examples import SCENARIOS, make_case
    from irlvla_bench.io.scoring_case import parse_case
    from irlvla_bench.io.sensors import camera_rig

    rng = np.random.default_rng(seed)
    width, height = image_size
    rig = camera_rig(width, height)
    out = []
    for i in range(n):
        case = parse_case(make_case(SCENARIOS[i % len(SCENARIOS)], seed + i), source=f"<synthetic {i}>")
        speed = float(case.ego.velocity[0])
        statuses = []
        for k in range(history_frames):
            dt = (history_frames - 1 - k) * 0.5  # seconds before the current frame
            noise = rng.normal(0.0, [0.3, 0.2, 0.02]) if dt > 0 else np.zeros(3)
            command = np.zeros(4)
            command[rng.integers(0, 4)] = 1.0
            statuses.append(EgoStatus(
                pose=np.array([-speed * dt, 0.0, 0.0]) + noise,
                velocity=np.array([speed + rng.normal(0.0, 0.5), rng.normal(0.0, 0.1)]),
                acceleration=rng.normal(0.0, 0.5, 2),
                driving_command=command,
            ))
        cameras = tuple({name: CameraImage(name, rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
                                           m.intrinsic, m.sensor2lidar_rotation, m.sensor2lidar_translation,
                                           m.distortion)
                         for name, m in rig.items()} for _ in range(history_frames))
        lidars = tuple(np.vstack([rng.uniform(-40, 40, (2, num_points)), rng.uniform(-2, 3, (1, num_points)),
                                  rng.uniform(0, 255, (1, num_points)), rng.integers(0, 32, (1, num_points)),
                                  np.zeros((1, num_points))]).astype(np.float32)
                       for _ in range(history_frames))
        out.append(AgentInput(token=case.token, ego_statuses=tuple(statuses), cameras=cameras, lidars=lidars,
                              privileged=case if privileged else None))
    return out


def contract_inputs(data_root: str | Path, split: str = "navhard_two_stage", *, max_scenes: int = 4,
                    cache_dir: str | Path | None = None, privileged: bool = True) -> list[AgentInput]:
    """Rich inputs for up to ``max_scenes`` scenes of a NAVSIM-layout dataset, original and synthetic frames
    alternating. Scoring cases come from ``cache_dir`` (``irlvla-bench data cache``) when given, else they are
    built in memory from the scene and the map (what caching does)."""
    from agents.inputs import build_agent_input
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.io.splits import list_scenes, load_split

    spec = load_split(split, data_root)
    listing = list_scenes(data_root, spec)
    kinds = {"original": [s for s in listing.scenes if s.kind == "original"],
             "synthetic": [s for s in listing.scenes if s.kind == "synthetic"]}
    refs = []
    for pair in zip(kinds["original"], kinds["synthetic"]):
        refs.extend(pair)
    refs += [s for s in listing.scenes if s not in refs]
    refs = refs[:max_scenes]
    if not refs:
        raise ValueError(f"split {split!r} of {data_root} selects no scenes")
    cases = _cached_cases(cache_dir) if (privileged and cache_dir is not None) else {}
    out = []
    for ref in refs:
        scene = load_scene(ref)
        history = min(FULL_SENSORS.history_frames, scene.num_history)
        full = SensorConfig(history_frames=history, cameras=CAMERA_NAMES, lidar=True,
                            sensor_frames=tuple(range(history)))
        root = listing.paths.synthetic_sensor_path if ref.kind == "synthetic" else listing.paths.original_sensor_path
        case = None
        if privileged:
            case = cases.get(ref.token) if cache_dir is not None else _build_case(scene, listing.paths.maps_root)
            if case is None:
                raise ValueError(f"{ref.token}: not in the cache {cache_dir} (cache the split first)")
        out.append(build_agent_input(scene, full, root, privileged=case))
    return out


def _cached_cases(cache_dir: str | Path) -> dict:
    from irlvla_bench.caching.runner import load_cached_cases

    return {c.token: c for c in load_cached_cases(cache_dir)}


def _build_case(scene, maps_root: Path):
    from irlvla_bench.caching.metric_cache import build_case
    from irlvla_bench.io.nuplan_map import load_map

    return build_case(scene, load_map(str(maps_root), scene.map_name))
