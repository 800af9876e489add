"""The training scenes of PPO: the frozen IL policy's scene features and the scoring cases, per token, and the
fine-tuned policy's checkpoint (an IL-format checkpoint with the RL planner, so one loader serves both).

The features go through the same path as the agent at test time (``agents.inputs.build_agent_input`` ->
``agents.vla.data.input_arrays`` -> ``IRLVLAModel.scene_features``), so PPO fine-tunes the planner on exactly what
it will see when evaluated. Scoring cases come from the metric cache (``cache_split``, resumable), so the exact
reward and the RWM read the same cases the evaluator scores.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from agents.rl.ppo import cat_features, slim_features
from agents.vla.model import IRLVLAModel, SceneFeatures
from irlvla_bench.io.atomic import atomic_path
from irlvla_bench.types import ScoringCase

POLICY_FORMAT = "irlvla-bench/vla-rl/v1"


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints: the IL one (read), the fine-tuned policy (written, read)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_policy_model(path: str | Path) -> tuple[IRLVLAModel, dict]:
    """(model in eval mode, payload) from an IL checkpoint (``agents.vla.train``) or an RL policy checkpoint."""
    from agents.vla.config import config_from_dict
    from agents.vla.train import CHECKPOINT_FORMAT as IL_FORMAT

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy checkpoint {path} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)  # plain data only: no code from the file
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found not in (POLICY_FORMAT, IL_FORMAT):
        raise ValueError(f"{path}: not an IRL-VLA policy checkpoint (format {found!r}, expected {POLICY_FORMAT!r} "
                         f"or {IL_FORMAT!r})")
    model = IRLVLAModel(config_from_dict(payload["config"]))
    model.load_state_dict(payload["model"])
    return model.eval(), payload


def save_policy(path: str | Path, model: IRLVLAModel, meta: dict) -> Path:
    """The fine-tuned policy as a self-contained checkpoint (config + every weight), written atomically."""
    payload = {"format": POLICY_FORMAT, "config": model.config.to_dict(), "model": model.state_dict(),
               "meta": dict(meta)}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Scenes


@dataclass
class SceneSet:
    tokens: list[str]
    cases: list[ScoringCase]
    features: SceneFeatures  # slim (agents.rl.ppo.FEATURE_FIELDS), one row per token
    agent_inputs: list | None = None  # kept only when asked (the RWM's sensors / il encoders read them)
    pairs: dict[str, str] | None = None  # token -> previous token where the split pairs them (navhard)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def previous(self) -> np.ndarray:
        return previous_scene_index(self.cases, self.tokens, self.pairs)


def previous_scene_index(cases: Sequence[ScoringCase], tokens: Sequence[str] = (),
                         pairs: Mapping[str, str] | None = None) -> np.ndarray:
    """(N,) index of the scene one frame (0.5 s) earlier in the same log, the frame whose plan the two-stage EC
    compares with; -1 where that frame is not among ``cases``.

    ``pairs`` (token -> previous token, e.g. a navhard split's (now, prev) and second-stage pairs) decide first:
    a synthetic frame shares its log and time stamp with the original one and with the other perturbations, so
    a look-up by time cannot tell which previous frame belongs to it; the split's pairing can. Frames without a
    pair fall back to the look-up by (log, time) among the cases."""
    from agents.rl.rewards import previous_frame

    by_token = {t: i for i, t in enumerate(tokens)}
    by_time = {(c.log_name, int(c.time_us)): i for i, c in enumerate(cases)}
    out = np.full(len(cases), -1, dtype=np.int64)
    for i, case in enumerate(cases):
        token = tokens[i] if i < len(tokens) else None
        if pairs and token in pairs:
            out[i] = by_token.get(pairs[token], -1)
            continue
        prev = previous_frame(case)
        if prev is not None:
            out[i] = by_time.get((case.log_name, int(prev.time_us)), -1)
    return out


def split_previous_pairs(data_root: str | Path, split: str) -> dict[str, str]:
    """token -> previous token of every explicit pair of a two-stage split ({} for other splits)."""
    from irlvla_bench.evaluation.plan import resolve_split

    spec = resolve_split(split, data_root)
    pairs: dict[str, str] = {}
    for now, prev, second_stage in spec.mappings:
        pairs[now] = prev
        for now_token, prev_token in second_stage:
            pairs[now_token] = prev_token
    return pairs


def default_cache_dir(out_dir: str | Path, split: str) -> Path:
    """Beside the run folder, like the evaluation runner's: runs under one parent share one metric cache."""
    return Path(out_dir).absolute().parent / "metric_cache" / Path(split).stem


def ensure_cases(data_root: str | Path, split: str, cache_dir: str | Path) -> dict[str, Path]:
    """token -> cached scoring case of every scene of ``split`` that could be cached (cache built if missing)."""
    from irlvla_bench.caching import cache_split

    summary = cache_split(data_root, split, cache_dir)
    return {o.token: Path(o.path) for o in summary.outcomes if o.status in ("cached", "skipped") and o.path}


@torch.no_grad()
def scene_features(model: IRLVLAModel, arrays: Sequence[dict[str, np.ndarray]], batch_size: int = 16) -> SceneFeatures:
    from agents.vla.model import to_tensors

    parts = []
    for start in range(0, len(arrays), batch_size):
        chunk = arrays[start:start + batch_size]
        batch = {k: np.stack([a[k] for a in chunk]) for k in chunk[0]}
        parts.append(slim_features(model.scene_features(to_tensors(batch))))
    return cat_features(parts)


def build_scene_set(model: IRLVLAModel, data_root: str | Path, split: str, cache_dir: str | Path, *,
                    max_scenes: int = 0, keep_inputs: bool = False, batch_size: int = 16,
                    tokens: Sequence[str] | None = None,
                    progress: Callable[[int, int], None] | None = None) -> SceneSet:
    """The scenes of ``split`` with a cached scoring case and the history the policy needs, in split order.

    ``max_scenes`` > 0 keeps that many, spread evenly over the split (not the first ones: consecutive scenes of
    one log are near-duplicates)."""
    from agents.inputs import build_agent_input
    from agents.vla.data import input_arrays, sensor_config, split_scenes
    from irlvla_bench.caching.scene import load_scene
    from irlvla_bench.io.scoring_case import load_case

    case_paths = ensure_cases(data_root, split, cache_dir)
    _, scenes = split_scenes(data_root, split)
    scenes = [(ref, root) for ref, root in scenes if ref.token in case_paths]
    if tokens is not None:
        wanted = set(tokens)
        scenes = [(ref, root) for ref, root in scenes if ref.token in wanted]
    if max_scenes and len(scenes) > max_scenes:
        keep = np.unique(np.linspace(0, len(scenes) - 1, max_scenes).round().astype(int))
        scenes = [scenes[i] for i in keep]
    sensors = sensor_config(model.config)
    kept_tokens, cases, arrays, inputs = [], [], [], []
    for i, (ref, sensor_root) in enumerate(scenes):
        scene = load_scene(ref)
        if scene.num_history >= sensors.history_frames:
            agent_input = build_agent_input(scene, sensors, sensor_root)
            kept_tokens.append(ref.token)
            cases.append(load_case(case_paths[ref.token]))
            arrays.append(input_arrays(agent_input, model.config))
            if keep_inputs:
                inputs.append(agent_input)
        if progress is not None:
            progress(i + 1, len(scenes))
    if not kept_tokens:
        raise ValueError(f"split {split!r} of {data_root} has no scene the policy can plan for")
    return SceneSet(kept_tokens, cases, scene_features(model, arrays, batch_size), inputs if keep_inputs else None)


def scene_set_key(data_root: str | Path, split: str, cache_dir: str | Path, il_sha256: str, max_scenes: int) -> str:
    """What a built scene set depends on: the data, the split, the metric cache's listing, the IL weights."""
    listing = Path(cache_dir) / "metadata.csv"  # rewritten identically by every cache_split of the same cache
    cache_sha = sha256_file(listing) if listing.exists() else ""
    text = json.dumps([str(Path(data_root).resolve()), split, cache_sha, il_sha256, int(max_scenes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_scene_set(model: IRLVLAModel, il_sha256: str, data_root: str | Path, split: str, cache_dir: str | Path,
                     *, max_scenes: int = 0, keep_inputs: bool = False) -> tuple[SceneSet, bool]:
    """``build_scene_set`` through a cache beside the metric cache (``<cache_dir>/../rl_scenes/<key>/``): reading
    840 scoring cases from JSON and running the trunk on every scene takes minutes, the cached arrays seconds.
    Returns (scene set, whether it came from the cache). Agent inputs (``keep_inputs``) are never cached."""
    if not (Path(cache_dir) / "metadata.csv").exists():
        ensure_cases(data_root, split, cache_dir)  # first: the key depends on what got cached
    folder = Path(cache_dir).absolute().parent / "rl_scenes" / scene_set_key(data_root, split, cache_dir,
                                                                             il_sha256, max_scenes)
    features_path, cases_path = folder / "features.pt", folder / "cases.pkl"
    if not keep_inputs and features_path.exists() and cases_path.exists():
        stored = torch.load(features_path, map_location="cpu", weights_only=True)
        # Our own cache of ScoringCase objects, written below by this function (never a downloaded file).
        with open(cases_path, "rb") as handle:
            cases = pickle.load(handle)
        features = SceneFeatures(**{f.name: stored["features"][f.name] for f in fields(SceneFeatures)})
        return SceneSet(list(stored["tokens"]), cases, features, pairs=split_previous_pairs(data_root, split)), True
    scenes = build_scene_set(model, data_root, split, cache_dir, max_scenes=max_scenes, keep_inputs=keep_inputs)
    scenes.pairs = split_previous_pairs(data_root, split)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(cases_path) as tmp:
        with open(tmp, "wb") as handle:
            pickle.dump(scenes.cases, handle, protocol=pickle.HIGHEST_PROTOCOL)
    with atomic_path(features_path) as tmp:  # last: its presence means the folder is complete
        torch.save({"tokens": list(scenes.tokens),
                    "features": {f.name: getattr(scenes.features, f.name) for f in fields(SceneFeatures)}}, tmp)
    return scenes, False
