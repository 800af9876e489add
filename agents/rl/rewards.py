"""Rewards for PPO over candidate poses: the reward world model's predictions or the exact scorer's values.

Both scorers return, per scene and batch of (M, 8, 3) ego-frame candidates, the eight sub-metrics (after the
human filter), ``extended_comfort`` and ``epdms`` under the same definition: the label the RWM learns
(``irlvla_bench.labelling``), i.e. NC x DAC x DDC x TLC x (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16 with EC against
the expert's previous plan, and the one-stage score where the frame has no previous frame. So "learned reward vs
rule-based reward" compares two estimates of one quantity.

``ScoreReward`` turns a scorer into PPO's reward: the EPDMS, or a weighted sum of named values.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Protocol, Sequence

import numpy as np

from evaluators.epdms.score import SUB_METRICS
from irlvla_bench.types import Proposals, ScoringCase

EC = "extended_comfort"
VALUE_NAMES = SUB_METRICS + (EC, "epdms")


class Scorer(Protocol):
    def score(self, scene: int, poses: np.ndarray) -> Mapping[str, np.ndarray]:
        """(M, 8, 3) candidates of scene ``scene`` -> every name of VALUE_NAMES as an (M,) array."""


def _proposals(poses: np.ndarray) -> Proposals:
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 8, 3)
    return Proposals(tuple(f"rl_{i}" for i in range(len(poses))), poses)


def exact_values(case: ScoringCase, poses: np.ndarray, prepared=None) -> dict[str, np.ndarray]:
    """The exact sub-metrics, EC and EPDMS of (M, 8, 3) candidates (labelling mode: one batch, shared work).

    ``prepared`` (``evaluators.epdms.scene.prepare_scene(case, NAVSIM_V2)``) skips rebuilding the scene's map
    structures; they do not depend on the proposals, so reusing them changes no number."""
    from evaluators.epdms import score_frame
    from evaluators.epdms.config import NAVSIM_V2
    from irlvla_bench.labelling.epdms import epdms, extended_comfort_labels

    sub = case.with_proposals(_proposals(poses))
    scores = score_frame(sub, mode="labelling", scene=replace(prepared, case=sub) if prepared is not None else None)
    n = len(scores)
    ec = extended_comfort_labels(case, scores.simulated_states.reshape(n, 41, 11), NAVSIM_V2)
    out = {m: np.asarray(scores.metrics[m], dtype=np.float64) for m in SUB_METRICS}
    out[EC] = ec
    out["epdms"] = np.where(np.isnan(ec), scores.score_single_frame,
                            epdms(scores.metrics, np.nan_to_num(ec, nan=0.0), NAVSIM_V2))
    return out


class ExactScorer:
    """The exact EPDMS scorer on the cached scoring cases (scene preparation cached per scene)."""

    def __init__(self, cases: Sequence[ScoringCase]):
        self.cases = list(cases)
        self._prepared: dict[int, object] = {}

    def score(self, scene: int, poses: np.ndarray) -> dict[str, np.ndarray]:
        from evaluators.epdms.config import NAVSIM_V2
        from evaluators.epdms.scene import prepare_scene

        if scene not in self._prepared:
            self._prepared[scene] = prepare_scene(self.cases[scene], NAVSIM_V2)
        return exact_values(self.cases[scene], poses, self._prepared[scene])


class RWMScorer:
    """The reward world model's predictions (``agents.rwm.predict.RewardModel``), scene inputs cached per scene.

    ``agent_inputs`` are needed by the RWM's ``sensors`` / ``il`` encoders only (the ``raster`` encoder renders
    the scoring case)."""

    def __init__(self, model, cases: Sequence[ScoringCase], agent_inputs: Sequence | None = None):
        self.model = model
        self.cases = list(cases)
        self.agent_inputs = agent_inputs
        self._inputs: dict[int, object] = {}

    @classmethod
    def load(cls, checkpoint: str, cases: Sequence[ScoringCase], agent_inputs: Sequence | None = None) -> "RWMScorer":
        from agents.rwm.predict import RewardModel

        return cls(RewardModel.load(checkpoint), cases, agent_inputs)

    def scene_inputs(self, scene: int):
        if scene not in self._inputs:
            agent_input = self.agent_inputs[scene] if self.agent_inputs is not None else None
            self._inputs[scene] = self.model.scene_inputs(self.cases[scene], agent_input)
        return self._inputs[scene]

    def score(self, scene: int, poses: np.ndarray) -> dict[str, np.ndarray]:
        pred = self.model.predict(self.scene_inputs(scene), np.asarray(poses, dtype=np.float32), as_frame=False)
        return {name: np.asarray(pred[name], dtype=np.float64) for name in VALUE_NAMES}


def parse_weights(text: str) -> tuple[tuple[str, float], ...]:
    """``"epdms=1,ego_progress=0.5"`` -> (("epdms", 1.0), ("ego_progress", 0.5)); names from VALUE_NAMES."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"reward weight {part!r} is not NAME=WEIGHT")
        pairs.append((name.strip(), float(value)))
    check_weights(pairs)
    return tuple(pairs)


def check_weights(weights: Sequence[tuple[str, float]]) -> None:
    unknown = [name for name, _ in weights if name not in VALUE_NAMES]
    if unknown:
        raise ValueError(f"unknown reward value(s) {unknown}; known: {', '.join(VALUE_NAMES)}")


def combine(values: Mapping[str, np.ndarray], weights: Sequence[tuple[str, float]]) -> np.ndarray:
    """The EPDMS when ``weights`` is empty, else sum of weight x value (EC's NaN, no previous frame, counts 1:
    the EPDMS then has no EC term either)."""
    if not weights:
        return np.asarray(values["epdms"], dtype=np.float64)
    total = np.zeros_like(np.asarray(values["epdms"], dtype=np.float64))
    for name, weight in weights:
        total = total + weight * np.nan_to_num(np.asarray(values[name], dtype=np.float64), nan=1.0)
    return total


class ScoreReward:
    """PPO's ``RewardFn``: (n,) scenes and (n, M, 8, 3) poses -> (n, M) combined values of ``scorer``."""

    def __init__(self, scorer: Scorer, weights: Sequence[tuple[str, float]] = ()):
        check_weights(weights)
        self.scorer = scorer
        self.weights = tuple(weights)

    def __call__(self, scenes: np.ndarray, poses: np.ndarray) -> np.ndarray:
        poses = np.asarray(poses)
        return np.stack([combine(self.scorer.score(int(s), p), self.weights) for s, p in zip(scenes, poses)])
