"""``RewardModel``: the batched inference API PPO calls.

    rwm = RewardModel.load("runs/rwm/rwm.pt")
    table = rwm.predict(case, poses)                 # (K, 8, 3) ego-frame candidates -> DataFrame, one row each
    arrays = rwm.predict(inputs, poses, as_frame=False)   # precomputed SceneInputs -> dict of (K,) arrays
    batch = rwm.predict_batch([inputs_a, inputs_b], poses_sk)   # (S, K, 8, 3) -> dict of (S, K) arrays (PPO)

A scene is a ``ScoringCase`` (the raster encoder renders it; sensors / il need ``agent_input=``) or its
precomputed ``SceneInputs`` (cheaper when a scene is scored many times). The reference trajectory (for the EP
normaliser) and the human trajectory (for the human filter) are taken from the scene and scored alongside the
candidates; ``previous`` replaces the expert's previous plan (t = -0.5 .. 3.5 s, (9, 3), current ego frame, its
first pose the previous ego pose) that EC compares with, e.g. with the policy's own previous plan. Candidates
are rolled out with the scorer's ego dynamics first (``agents.rwm.rollout``). Columns: every sub-metric after the filter (expected values),
``extended_comfort``, ``ego_progress``, ``progress_m``, ``multiplicative``, ``epdms``, the unfiltered ``raw_*``,
``prob1_*`` the probability that a metric is exactly 1 after the filter and, for NC and DDC, the unfiltered
class probabilities ``p0_*``, ``p05_*``, ``p1_*``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agents.rwm.assemble import FILTERED, assemble, expectations
from agents.rwm.config import RWMConfig
from agents.rwm.data import candidate_states, compute_inputs, scene_arrays
from agents.rwm.features import SceneInputs
from agents.rwm.model import BINARY, THREE_CLASS
from agents.rwm.rollout import rollout
from agents.rwm.train import build_model, load_checkpoint
from irlvla_bench.labelling.label import RAW_PREFIX
from irlvla_bench.types import ScoringCase


class RewardModel:
    def __init__(self, model, config: RWMConfig, device: str = "cpu", chunk: int = 2048):
        self.model = model.to(device).eval()
        self.config = config
        self.device = device
        self.chunk = chunk

    @classmethod
    def load(cls, checkpoint: str | Path, device: str = "cpu", chunk: int = 2048) -> "RewardModel":
        payload = load_checkpoint(checkpoint)
        config = RWMConfig.from_dict(payload["config"])
        model = build_model(config, int(payload["bev_channels"]))
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:  # torch reports missing / unexpected / mis-shaped weights this way
            raise ValueError(f"{checkpoint}: weights do not fit this RWM architecture (a checkpoint of an older "
                             f"version? retrain it): {str(exc).splitlines()[0]}") from None
        return cls(model, config, device, chunk)

    def scene_inputs(self, case: ScoringCase, agent_input=None) -> SceneInputs:
        return compute_inputs(case, self.config.encoder, agent_input)

    @torch.no_grad()
    def predict(self, scene: ScoringCase | SceneInputs, poses: np.ndarray, *, agent_input=None,
                previous: np.ndarray | None = None, apply_filter: bool = True, as_frame: bool = True):
        inputs = scene if isinstance(scene, SceneInputs) else self.scene_inputs(scene, agent_input)
        poses = np.asarray(poses, dtype=np.float32).reshape(-1, 8, 3)
        dev = self.device
        arrays = {k: torch.as_tensor(v, device=dev) for k, v in scene_arrays([inputs], [previous]).items()}
        encoding = self.model.encode(arrays["bev"], arrays["ego"])
        anchors = [inputs.reference] + ([inputs.human] if inputs.human is not None else [])
        everything = np.concatenate([np.asarray(anchors, dtype=np.float32), poses], axis=0)
        states = rollout(inputs.initial_state, everything)
        heads: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(everything), self.chunk):
            part = torch.as_tensor(everything[None, start:start + self.chunk], device=dev)
            rolled = torch.as_tensor(states[None, start:start + self.chunk], device=dev)
            outputs = self.model(encoding, part, rolled, arrays["previous"], arrays["previous_states"],
                                 arrays["has_previous"])
            for name, value in outputs.items():
                heads.setdefault(name, []).append(value)
        merged = {name: torch.cat(parts, dim=1) for name, parts in heads.items()}
        values, zero = expectations(merged)
        product = values["no_at_fault_collisions"] * values["drivable_area_compliance"] * \
            values["driving_direction_compliance"] * values["traffic_light_compliance"]
        has_human = torch.tensor([inputs.human is not None], device=dev)
        human_zero = {n: zero[n][:, 1] for n in FILTERED} if (apply_filter and inputs.human is not None) else None
        out = assemble(values, merged["progress"], merged["progress"][:, 0], product[:, 0], human_zero, has_human)
        skip = len(anchors)
        result = {name: out[name][0, skip:].cpu().numpy().astype(np.float64)
                  for name in tuple(THREE_CLASS) + tuple(BINARY) + ("ego_progress", "multiplicative", "epdms")}
        result["progress_m"] = merged["progress"][0, skip:].cpu().numpy().astype(np.float64)
        for name in tuple(THREE_CLASS) + tuple(BINARY):
            result[RAW_PREFIX + name] = values[name][0, skip:].cpu().numpy().astype(np.float64)
        for name in BINARY:
            result["prob1_" + name] = result[name]
        for name in THREE_CLASS:
            probs = merged[name][0, skip:].softmax(-1).cpu().numpy().astype(np.float64)
            for j, tag in enumerate(("p0_", "p05_", "p1_")):
                result[tag + name] = probs[:, j]
            # P(metric == 1) after the filter: the human fails it (all candidates get 1) or the candidate passes.
            human = float(human_zero[name][0]) if human_zero is not None else 0.0
            result["prob1_" + name] = human + (1.0 - human) * probs[:, 2]
        if not as_frame:
            return result
        import pandas as pd

        return pd.DataFrame(result)

    @torch.no_grad()
    def predict_batch(self, scenes: list[SceneInputs], poses: np.ndarray,
                      previous: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One forward pass for S scenes x K candidates (``poses`` (S, K, 8, 3)): the filtered sub-metrics,
        ``ego_progress``, ``progress_m``, ``multiplicative`` and ``epdms`` as (S, K) arrays. ``previous``
        (S, 9, 3) replaces the scenes' previous plans (e.g. the policy's own outputs one frame earlier)."""
        poses = np.asarray(poses, dtype=np.float32)
        if poses.ndim != 4 or poses.shape[0] != len(scenes) or poses.shape[2:] != (8, 3):
            raise ValueError(f"poses must be (S={len(scenes)}, K, 8, 3), got {poses.shape}")
        arrays = scene_arrays(scenes, None if previous is None else list(np.asarray(previous, dtype=np.float64)))
        dev = self.device
        t = {k: torch.as_tensor(v, device=dev) for k, v in arrays.items()}
        # Slot 0: the reference (EP normaliser), slot 1: the human (filter; the reference again, masked, if none).
        anchors = np.stack([np.stack([x.reference, x.human if x.human is not None else x.reference])
                            for x in scenes]).astype(np.float32)
        everything = np.concatenate([anchors, poses], axis=1)
        states = torch.as_tensor(candidate_states(scenes, everything), device=dev)
        has_human = torch.tensor([x.human is not None for x in scenes], device=dev)
        encoding = self.model.encode(t["bev"], t["ego"])
        heads = self.model(encoding, torch.as_tensor(everything, device=dev), states, t["previous"],
                           t["previous_states"], t["has_previous"])
        values, zero = expectations(heads)
        product = values["no_at_fault_collisions"] * values["drivable_area_compliance"] * \
            values["driving_direction_compliance"] * values["traffic_light_compliance"]
        out = assemble(values, heads["progress"], heads["progress"][:, 0], product[:, 0],
                       {n: zero[n][:, 1] for n in FILTERED}, has_human)
        result = {name: out[name][:, 2:].cpu().numpy().astype(np.float64)
                  for name in tuple(THREE_CLASS) + tuple(BINARY) + ("ego_progress", "multiplicative", "epdms")}
        result["progress_m"] = heads["progress"][:, 2:].cpu().numpy().astype(np.float64)
        return result
