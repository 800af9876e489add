"""NAVSIM submission pickles: write one for an agent, validate it, read one back.

The pickle is a plain dict with NAVSIM's keys (``run_create_submission_pickle.py``)::

    {"team_name": str, "authors": str, "email": str, "institution": str, "country / region": str,
     "first_stage_predictions": [{token: poses, ...}],    # original frames of the split (a one-element list)
     "second_stage_predictions": [{token: poses, ...}]}   # second-stage synthetic frames ({} for one-stage splits)

**Difference from NAVSIM.** NAVSIM stores ``navsim.common.dataclasses.Trajectory`` objects (float32 ``poses``
plus a ``TrajectorySampling``); navsim is not a dependency here, so ``poses`` is the (8, 3) float64 array itself
(ego-frame x, y, heading at 0.5 s .. 4.0 s, the same numbers), and the pickle loads with plain ``pickle`` and
numpy. The NAVSIM adapter converts each value with
``Trajectory(poses.astype(np.float32), TrajectorySampling(time_horizon=4, interval_length=0.5))`` before
uploading; ``load_submission`` reads NAVSIM-made pickles too (values with a ``poses`` attribute) when navsim is
importable. Only load pickles you trust: unpickling runs code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from agents.base import NUM_POSES, Agent
from irlvla_bench.evaluation.execute import local_planner, parallel_session, run_items
from irlvla_bench.evaluation.plan import EvaluationPlan, default_cache_dir, list_jobs, prepare_plan, resolve_split
from irlvla_bench.evaluation.planners import AgentSource, agent_requires_privileged, check_agent_name
from irlvla_bench.evaluation.records import FAILED, TokenRecord
from irlvla_bench.evaluation.tokens import TokenContext, WorkItem
from irlvla_bench.io.atomic import atomic_path
from irlvla_bench.io.splits import SplitSpec

TEAM_KEYS = ("team_name", "authors", "email", "institution", "country / region")
FIRST, SECOND = "first_stage_predictions", "second_stage_predictions"
SUBMISSION_KEYS = TEAM_KEYS + (FIRST, SECOND)
MAX_LISTED = 20


class SubmissionError(ValueError):
    """A submission that NAVSIM's server would reject (or that we refuse to write)."""

    def __init__(self, what: str, problems: list[str]):
        self.problems = problems
        shown = problems[:MAX_LISTED]
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        super().__init__(f"{what}:\n" + "\n".join(f"  - {p}" for p in shown) + more)


@dataclass(frozen=True)
class Team:
    team_name: str
    authors: str
    email: str
    institution: str
    country: str

    def as_keys(self) -> dict[str, str]:
        return dict(zip(TEAM_KEYS, (self.team_name, self.authors, self.email, self.institution, self.country)))


def _poses_of(value: Any) -> Any:
    """A prediction value: our (8, 3) array, or a NAVSIM ``Trajectory`` (anything with ``poses``)."""
    return getattr(value, "poses", value)


def _check_prediction(token: str, value: Any) -> str | None:
    poses = _poses_of(value)
    try:
        array = np.asarray(poses, dtype=np.float64)
    except (TypeError, ValueError):
        return f"{token}: prediction is not numeric ({type(poses).__name__})"
    if array.shape != (NUM_POSES, 3):
        return f"{token}: prediction must have shape ({NUM_POSES}, 3), got {array.shape}"
    if not np.isfinite(array).all():
        return f"{token}: prediction contains NaN or inf"
    return None


def _prediction_dict(submission: Mapping, key: str, problems: list[str]) -> dict | None:
    value = submission.get(key)
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        problems.append(f"{key}: must be a list holding one dict of token -> poses (NAVSIM's layout)")
        return None
    return value[0]


def structure_problems(submission: Any) -> list[str]:
    """Keys, team fields and the prediction containers (not the tokens)."""
    if not isinstance(submission, dict):
        return [f"top level must be a dict, got {type(submission).__name__}"]
    problems = [f"missing key {k!r}" for k in SUBMISSION_KEYS if k not in submission]
    problems += [f"unexpected key {k!r}" for k in submission if k not in SUBMISSION_KEYS]
    for key in TEAM_KEYS:
        if key in submission and (not isinstance(submission[key], str) or not submission[key].strip()):
            problems.append(f"{key}: must be a non-empty string")
    for key in (FIRST, SECOND):
        if key in submission:
            _prediction_dict(submission, key, problems)
    return problems


def validate_submission(submission: Any, first_tokens: list[str], second_tokens: list[str]) -> None:
    """Raise ``SubmissionError`` listing every problem: structure, missing or extra tokens per stage, shapes,
    non-finite values."""
    problems = structure_problems(submission)
    if not problems:
        for key, expected in ((FIRST, first_tokens), (SECOND, second_tokens)):
            predictions = submission[key][0]
            missing = [t for t in expected if t not in predictions]
            extra = sorted(set(predictions) - set(expected))
            if missing:
                problems.append(f"{key}: {len(missing)} token(s) of the split without a prediction: "
                                f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}")
            if extra:
                problems.append(f"{key}: {len(extra)} token(s) not in this stage of the split: "
                                f"{', '.join(extra[:10])}{' ...' if len(extra) > 10 else ''}")
            problems += [p for t in expected if t in predictions if (p := _check_prediction(t, predictions[t]))]
    if problems:
        raise SubmissionError("invalid NAVSIM submission", problems)


def load_submission(path: str | Path) -> dict:
    """Read a submission pickle and check its structure (tokens are checked against a split when scoring)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            submission = pickle.load(handle)
    except FileNotFoundError:
        raise SubmissionError(f"{path}", ["no such file"]) from None
    except ModuleNotFoundError as exc:
        raise SubmissionError(f"{path}", [f"the pickle holds objects of a module that is not installed ({exc.name}); "
                                          "NAVSIM-made pickles need navsim importable"]) from None
    except (pickle.UnpicklingError, EOFError) as exc:
        raise SubmissionError(f"{path}", [f"not a readable pickle: {exc}"]) from None
    problems = structure_problems(submission)
    if problems:
        raise SubmissionError(f"{path}: not a NAVSIM submission", problems)
    return submission


def submission_predictions(submission: Mapping) -> dict[str, Any]:
    """Token -> poses over both stages (a token in both stages is an error)."""
    first, second = submission[FIRST][0], submission[SECOND][0]
    both = sorted(set(first) & set(second))
    if both:
        raise SubmissionError("invalid NAVSIM submission", [f"token {t} is in both stages" for t in both])
    return {t: _poses_of(v) for t, v in {**first, **second}.items()}


def _plan_for(agent_spec, data_root, spec: SplitSpec, privileged: bool, cache_dir, out: Path,
              workers: int) -> EvaluationPlan:
    if privileged:  # the agent reads the scoring case, so the metric cache must exist
        return prepare_plan(data_root, spec, cache_dir or default_cache_dir(out, spec.name), workers=workers)
    return list_jobs(data_root, spec, None)


def predict_split(agent_spec: str | Agent, data_root, split: str | SplitSpec, *, seed: int = 0, workers: int = 1,
                  cache_dir=None, out: Path = Path("submission.pkl"), allow_privileged: bool = False,
                  progress: Callable[[str | None, int, int], None] | None = None
                  ) -> tuple[EvaluationPlan, list[TokenRecord]]:
    """Run the agent on every token of the split (no scoring), with the evaluation runner's per-token function."""
    check_agent_name(agent_spec)
    privileged = agent_requires_privileged(agent_spec)
    name = AgentSource(agent_spec, seed).name
    if privileged and not allow_privileged:
        raise SubmissionError(f"agent {name!r} is privileged", [
            "it reads the scoring case (ground truth); NAVSIM's leaderboard gives agents only their sensor input",
            "pass --allow-privileged (allow_privileged=True) to write a submission for local use anyway"])
    spec = resolve_split(split, data_root)
    source = AgentSource(agent_spec, seed)
    ctx = TokenContext(traffic="log_replay", label=name, store=None, score=False)
    records: dict[str, TokenRecord] = {}
    planner = local_planner(source, workers)
    with parallel_session(workers):
        plan = _plan_for(agent_spec, data_root, spec, privileged, cache_dir, Path(out), workers)
        total = len(plan.jobs)
        if progress is not None:
            progress(None, 0, total)

        def on_result(record: TokenRecord) -> None:
            records[record.token] = record
            if progress is not None:
                progress(record.token, len(records), total)

        run_items(source, [WorkItem(job) for job in plan.jobs], ctx, workers=workers, on_result=on_result,
                  planner=planner)
    return plan, [records[t] for t in plan.tokens]


def build_submission(team: Team, plan: EvaluationPlan, records: list[TokenRecord]) -> dict:
    failed = [r for r in records if r.status == FAILED]
    if failed:
        problems = [f"{r.token} ({r.log_name}): {r.error}" for r in failed]
        problems.append(f"traceback of {failed[0].token}:\n{failed[0].traceback}")
        raise SubmissionError(f"the agent failed on {len(failed)} of {len(records)} token(s); nothing was written",
                              problems)
    stage = {r.token: r.stage for r in records}
    first = {r.token: np.array(r.poses, dtype=np.float64) for r in records if stage[r.token] == "first"}
    second = {r.token: np.array(r.poses, dtype=np.float64) for r in records if stage[r.token] == "second"}
    submission = {**team.as_keys(), FIRST: [first], SECOND: [second]}
    validate_submission(submission, plan.stage_tokens("first"), plan.stage_tokens("second"))
    return submission


def write_submission(agent_spec: str | Agent, data_root, split: str | SplitSpec, *, team: str, authors: str,
                     email: str, institution: str, country: str, out: str | Path = "submission.pkl", seed: int = 0,
                     workers: int = 1, cache_dir=None, allow_privileged: bool = False,
                     progress: Callable[[str | None, int, int], None] | None = None) -> Path:
    """Run the agent on every frame the split needs and write NAVSIM's submission pickle to ``out`` (atomically,
    only when it is complete and valid)."""
    out = Path(out)
    team_info = Team(team, authors, email, institution, country)
    bad = [f"{k}: must be a non-empty string" for k, v in team_info.as_keys().items() if not str(v).strip()]
    if bad:
        raise SubmissionError("missing team information", bad)
    plan, records = predict_split(agent_spec, data_root, split, seed=seed, workers=workers, cache_dir=cache_dir,
                                  out=out, allow_privileged=allow_privileged, progress=progress)
    submission = build_submission(team_info, plan, records)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as handle:
            pickle.dump(submission, handle)
    return out


__all__ = ["SUBMISSION_KEYS", "SubmissionError", "Team", "build_submission", "load_submission", "predict_split",
           "submission_predictions", "validate_submission", "write_submission"]
