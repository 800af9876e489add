"""Training data of the RWM: label shards as arrays, scene inputs per token (cached), and batches.

A batch holds S scenes x K candidate slots. Slot 0 is the scene's PDM-Closed reference and slot 1 its human
trajectory (a copy of the reference, masked, on synthetic frames): the assembled EPDMS needs the reference's
progress for the EP normaliser and the human's metrics for the filter, exactly as the evaluator does. The
other K - 2 slots are candidates drawn uniformly without replacement (the candidate mix of the labels decides
the balance; sampling them uniformly keeps the probabilities calibrated).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from agents.rwm.config import EncoderConfig
from agents.rwm.features import SceneInputs, render_raster, scene_inputs
from agents.rwm.rollout import previous_plan_states, rollout
from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.io.atomic import atomic_path
from irlvla_bench.labelling.label import (
    HUMAN_PREFIX,
    POSE_COLUMNS,
    RAW_PREFIX,
    load_label_config,
    load_labels,
)

EC = "extended_comfort"
TARGETS = tuple(RAW_PREFIX + m for m in SUB_METRICS) + SUB_METRICS + (EC, "progress_m", "epdms",
                                                                         "reference_progress_m",
                                                                         "reference_multiplicative")


@dataclass
class LabelStore:
    """Label rows as arrays, grouped by scene (rows of a scene are contiguous, in candidate order)."""

    poses: np.ndarray  # (N, 8, 3) float32
    targets: dict[str, np.ndarray]  # name -> (N,) float32
    source: np.ndarray  # (N,) str
    candidate_id: np.ndarray  # (N,) str
    tokens: list[str]
    start: np.ndarray  # (S,)
    stop: np.ndarray
    reference_row: np.ndarray  # (S,) row of the reference candidate
    human_row: np.ndarray  # (S,) row of the human candidate, -1 on synthetic frames
    scene_type: list[str]
    scene_kind: list[str]
    case_file: list[str]
    label_dir: list[str]  # the label folder each scene came from

    @property
    def num_scenes(self) -> int:
        return len(self.tokens)

    def rows(self, scene: int) -> np.ndarray:
        return np.arange(self.start[scene], self.stop[scene])


def load_store(label_dirs: Iterable[str | Path], tokens: set[str] | None = None) -> LabelStore:
    """All scenes of one or more label folders (a scene present in several keeps its first folder's rows)."""
    frames, origin = [], []
    seen: set[str] = set()
    for folder in label_dirs:
        table = load_labels(folder, tokens=tokens)
        if table.empty:
            continue
        table = table[~table["token"].isin(seen)]
        seen.update(table["token"].unique())
        frames.append(table)
        origin.extend([str(folder)] * len(table))
    if not frames:
        raise ValueError(f"no label rows found in {list(map(str, label_dirs))}")
    table = pd.concat(frames, ignore_index=True)
    token = table["token"].to_numpy()
    boundaries = np.flatnonzero(np.concatenate([[True], token[1:] != token[:-1]]))
    start = boundaries
    stop = np.concatenate([boundaries[1:], [len(table)]])
    source = table["source"].to_numpy().astype(str)
    ref_row, human_row = [], []
    for a, b in zip(start, stop):
        src = source[a:b]
        refs = np.flatnonzero(src == "reference")
        if not len(refs):
            raise ValueError(f"scene {token[a]} has no reference candidate (label with include_reference=True)")
        ref_row.append(a + refs[0])
        humans = np.flatnonzero(src == "human")
        human_row.append(a + humans[0] if len(humans) else -1)
    targets = {name: table[name].to_numpy(dtype=np.float32) for name in TARGETS}
    for m in SUB_METRICS:
        targets[HUMAN_PREFIX + m] = table[HUMAN_PREFIX + m].to_numpy(dtype=np.float32)
    return LabelStore(
        poses=table[list(POSE_COLUMNS)].to_numpy(dtype=np.float32).reshape(-1, 8, 3), targets=targets, source=source,
        candidate_id=table["candidate_id"].to_numpy().astype(str), tokens=[str(token[a]) for a in start],
        start=start, stop=stop, reference_row=np.asarray(ref_row), human_row=np.asarray(human_row),
        scene_type=[str(table["scene_type"].iloc[a]) for a in start],
        scene_kind=[str(table["scene_kind"].iloc[a]) for a in start],
        case_file=[str(table["case_file"].iloc[a]) for a in start], label_dir=[origin[a] for a in start])


# ----------------------------------------------------------------------------------------------------------------
# Scene inputs


def featurizer_digest(cfg: EncoderConfig) -> str:
    """Identifies what the featurizer produces (the CNN's widths do not change the inputs)."""
    part = {"kind": cfg.kind, cfg.kind: asdict(getattr(cfg, cfg.kind))}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:12]


def _agent_inputs(label_dir: str, tokens: set[str], cfg: EncoderConfig):
    from agents.rwm.sensors_bev import load_agent_inputs

    meta = load_label_config(label_dir)
    if "data_root" not in meta or "split" not in meta:
        raise ValueError(f"{label_dir}: labels_config.json names no data_root/split; the {cfg.kind!r} encoder "
                         "needs the sensor data (label with `irlvla-bench label` or pass meta)")
    if cfg.kind == "il":
        from agents.rwm.il_adapter import il_sensor_config
        from agents.rwm.sensors_bev import SensorsConfig

        sensors = SensorsConfig(cameras=il_sensor_config(cfg.il.checkpoint).cameras)
    else:
        sensors = cfg.sensors
    return dict(load_agent_inputs(meta["data_root"], meta["split"], tokens, sensors))


def compute_inputs(case, cfg: EncoderConfig, agent_input=None) -> SceneInputs:
    """The scene inputs of one case for an encoder kind (``agent_input`` needed for sensors / il)."""
    if cfg.kind == "raster":
        return scene_inputs(case, render_raster(case, cfg.raster))
    if agent_input is None:
        raise ValueError(f"the {cfg.kind!r} encoder needs the scene's AgentInput (cameras)")
    command = agent_input.current.driving_command
    if cfg.kind == "sensors":
        from agents.rwm.sensors_bev import lift_images

        return scene_inputs(case, lift_images(agent_input, cfg.sensors), command)
    from agents.rwm.il_adapter import il_bev

    return scene_inputs(case, il_bev(agent_input, cfg.il.checkpoint), command)


def _save_inputs(path: Path, inputs: SceneInputs) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **inputs.arrays())


def load_inputs(store: LabelStore, cfg: EncoderConfig, *, cache_root: str | Path | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[SceneInputs]:
    """Scene inputs of every scene of ``store`` (in scene order), read from / written to a per-token cache
    (default ``<label dir>/features/<kind>-<digest>/``)."""
    from irlvla_bench.io.scoring_case import load_case

    digest = f"{cfg.kind}-{featurizer_digest(cfg)}"
    folders = [Path(cache_root) / digest if cache_root else Path(d) / "features" / digest for d in store.label_dir]
    result: list[SceneInputs | None] = [None] * store.num_scenes
    missing = []
    for i, token in enumerate(store.tokens):
        path = folders[i] / f"{token}.npz"
        if path.exists():
            with np.load(path) as data:
                inputs = SceneInputs.from_arrays(token, data)
            if inputs.initial_state is None:  # written before the ego states were stored: add them
                from dataclasses import replace

                from agents.rwm.features import ego_states

                current, previous = ego_states(load_case(store.case_file[i]))
                inputs = replace(inputs, initial_state=current,
                                 previous_state=previous if inputs.previous is not None else None)
                _save_inputs(path, inputs)
            result[i] = inputs
        else:
            missing.append(i)
    agent_inputs: dict = {}
    if missing and cfg.kind != "raster":
        by_dir: dict[str, set[str]] = {}
        for i in missing:
            by_dir.setdefault(store.label_dir[i], set()).add(store.tokens[i])
        for folder, wanted in by_dir.items():
            agent_inputs.update(_agent_inputs(folder, wanted, cfg))
    for done, i in enumerate(missing):
        token = store.tokens[i]
        path = folders[i] / f"{token}.npz"
        if not path.exists():  # another process featurizing the same folder may have written it meanwhile
            _save_inputs(path, compute_inputs(load_case(store.case_file[i]), cfg, agent_inputs.get(token)))
        with np.load(path) as data:  # read back what later runs read (the BEV is stored as float16)
            result[i] = SceneInputs.from_arrays(token, data)
        if progress:
            progress(done + 1, len(missing))
    return result  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------------
# Batches


def previous_states(inputs: SceneInputs, plan: np.ndarray | None = None) -> np.ndarray | None:
    """(41, 11) rollout of the scene's previous plan (or of ``plan``, (9, 3), in its place); None without one."""
    plan = inputs.previous if plan is None else plan
    if plan is None or inputs.previous_state is None:
        return None
    return previous_plan_states(inputs.previous_state, plan)


def scene_arrays(inputs: list[SceneInputs], plans: list[np.ndarray | None] | None = None) -> dict[str, np.ndarray]:
    """Stacked per-scene arrays: bev, ego, previous (NaN -> 0), previous_states (rolled out) and has_previous."""
    plans = plans or [None] * len(inputs)
    rolled = [previous_states(x, p) for x, p in zip(inputs, plans)]
    used = [x.previous if p is None else p for x, p in zip(inputs, plans)]
    previous = np.stack([np.zeros((9, 3)) if u is None else u for u in used])
    return {"bev": np.stack([x.bev for x in inputs]).astype(np.float32),
            "ego": np.stack([x.ego for x in inputs]).astype(np.float32),
            "previous": previous.astype(np.float32),
            "previous_states": np.stack([np.zeros((41, 11), np.float32) if r is None else r for r in rolled]),
            "has_previous": np.array([r is not None for r in rolled])}


def candidate_states(inputs: list[SceneInputs], poses: np.ndarray) -> np.ndarray:
    """(S, K, 41, 11) float32 rollouts of (S, K, 8, 3) candidates from each scene's ego state."""
    return np.stack([rollout(x.initial_state, p) for x, p in zip(inputs, poses)])


def candidate_rows(store: LabelStore, scene: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """[reference, human (or the reference again), count - 2 other candidates] rows of one scene."""
    ref, human = store.reference_row[scene], store.human_row[scene]
    pool = store.rows(scene)
    pool = pool[(pool != ref) & (pool != human)]
    others = count - 2
    pick = rng.choice(pool, others, replace=len(pool) < others) if len(pool) else np.full(others, ref)
    return np.concatenate([[ref, human if human >= 0 else ref], pick]).astype(np.int64)


def make_batch(store: LabelStore, inputs: list[SceneInputs], scenes: np.ndarray, count: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = np.stack([candidate_rows(store, int(s), count, rng) for s in scenes])  # (S, K)
    batch = scene_arrays([inputs[int(s)] for s in scenes])
    batch["rows"] = rows
    batch["poses"] = store.poses[rows]
    batch["states"] = candidate_states([inputs[int(s)] for s in scenes], batch["poses"])
    batch["has_human"] = store.human_row[scenes] >= 0
    for name, values in store.targets.items():
        batch[name] = values[rows]
    return batch


def to_torch(batch: dict[str, np.ndarray], device="cpu") -> dict:
    import torch

    return {k: torch.as_tensor(v).to(device) for k, v in batch.items() if v.dtype != object}
