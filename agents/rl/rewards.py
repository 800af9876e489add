"""Rewards for PPO over candidate poses: the reward world model's predictions or the exact scorer's values.

Both scorers return, per scene and batch of (M, 8, 3) ego-frame candidates, the eight sub-metrics (after the
human filter), ``extended_comfort`` and ``epdms`` under the same definition: the label the RWM learns
(``irlvla_bench.labelling``), i.e. NC x DAC x DDC x TLC x (5 EP + 5 TTC + 2 LK + 2 HC + 2 EC) / 16 with EC against
the expert's previous plan, and the one-stage score where the frame has no previous frame. So "learned reward vs
rule-based reward" compares two estimates of one quantity.

``ScoreReward`` turns a scorer into PPO's reward: the EPDMS, or a weighted sum of named values.

**EC against the policy's own previous plan.** The evaluator's two-stage EC compares the agent's plan now with
the agent's own plan one frame (0.5 s) earlier; the labels use the expert's previous plan instead, because a
candidate has no previous plan of its own. PPO does have one: the policy's plan at the previous frame. Both
scorers take it (``previous``: (8, 3) poses in the *previous* frame's ego frame, as the agent output them) and
then value EC as the evaluator does, so the policy is rewarded for staying consistent with itself; without it
(no previous frame among the scenes) they fall back to the expert's previous plan.
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
    def score(self, scene: int, poses: np.ndarray, previous: np.ndarray | None = None) -> Mapping[str, np.ndarray]:
        """(M, 8, 3) candidates of scene ``scene`` (and the policy's previous-frame plan, or None) -> every name of
        VALUE_NAMES as an (M,) array."""


def _proposals(poses: np.ndarray) -> Proposals:
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 8, 3)
    return Proposals(tuple(f"rl_{i}" for i in range(len(poses))), poses)


def previous_frame(case: ScoringCase):
    """The logged ego state one frame (0.5 s) before ``case`` (what the two-stage EC pairs it with), or None."""
    from evaluators.epdms.config import NAVSIM_V2
    from irlvla_bench.labelling.trajectories import previous_frame_index

    index = previous_frame_index(case, NAVSIM_V2.max_prev_frame_offset_s)
    return None if index is None else case.human_past[index]


def previous_in_current_frame(case: ScoringCase, previous: np.ndarray) -> np.ndarray | None:
    """A previous-frame plan as the RWM's ``previous`` input: (9, 3) in the current ego frame, the previous ego
    pose (t = -0.5 s) then the plan's poses (t = 0 .. 3.5 s); None without a previous frame."""
    from irlvla_bench.labelling.trajectories import to_ego_frame, to_global

    prev = previous_frame(case)
    if prev is None:
        return None
    origin = np.asarray(case.ego.rear_axle, dtype=np.float64)
    prev_pose = np.asarray(prev.rear_axle, dtype=np.float64)
    plan = to_global(prev_pose, np.asarray(previous, dtype=np.float64))
    return to_ego_frame(origin, np.concatenate([prev_pose[None], plan], axis=0))


def exact_values(case: ScoringCase, poses: np.ndarray, prepared=None,
                 previous: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The exact sub-metrics, EC and EPDMS of (M, 8, 3) candidates (labelling mode: one batch, shared work).

    ``prepared`` (``evaluators.epdms.scene.prepare_scene(case, NAVSIM_V2)``) skips rebuilding the scene's map
    structures; they do not depend on the proposals, so reusing them changes no number. ``previous``: the
    policy's own plan at the previous frame for EC (see the module docstring); None: the expert's."""
    from evaluators.epdms import score_frame
    from evaluators.epdms.config import NAVSIM_V2
    from irlvla_bench.labelling.epdms import epdms, extended_comfort_labels

    sub = case.with_proposals(_proposals(poses))
    scores = score_frame(sub, mode="labelling", scene=replace(prepared, case=sub) if prepared is not None else None)
    n = len(scores)
    ec = extended_comfort_labels(case, scores.simulated_states.reshape(n, 41, 11), NAVSIM_V2, previous)
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

    def score(self, scene: int, poses: np.ndarray, previous: np.ndarray | None = None) -> dict[str, np.ndarray]:
        from evaluators.epdms.config import NAVSIM_V2
        from evaluators.epdms.scene import prepare_scene

        if scene not in self._prepared:
            self._prepared[scene] = prepare_scene(self.cases[scene], NAVSIM_V2)
        return exact_values(self.cases[scene], poses, self._prepared[scene], previous)


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

    def score(self, scene: int, poses: np.ndarray, previous: np.ndarray | None = None) -> dict[str, np.ndarray]:
        plan = previous_in_current_frame(self.cases[scene], previous) if previous is not None else None
        pred = self.model.predict(self.scene_inputs(scene), np.asarray(poses, dtype=np.float32), previous=plan,
                                  as_frame=False)
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
    """PPO's ``RewardFn``: (n,) scenes, (n, M, 8, 3) poses and optionally (n, 8, 3) previous-frame plans (NaN rows:
    none) -> (n, M) combined values of ``scorer``."""

    def __init__(self, scorer: Scorer, weights: Sequence[tuple[str, float]] = ()):
        check_weights(weights)
        self.scorer = scorer
        self.weights = tuple(weights)

    def __call__(self, scenes: np.ndarray, poses: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
        poses = np.asarray(poses)
        out = []
        for i, (s, p) in enumerate(zip(scenes, poses)):
            plan = None
            if previous is not None and np.isfinite(previous[i]).all():
                plan = np.asarray(previous[i])
            out.append(combine(self.scorer.score(int(s), p, plan), self.weights))
        return np.stack(out)
