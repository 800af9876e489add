"""Evaluation runner (agent or submission pickle -> exact EPDMS on a split) and NAVSIM submission pickles.

Output schema: ``docs/evaluation-schema.md``. Modules: ``plan`` (frames of a split, metric cache), ``planners``
(agent / submission lookup), ``tokens`` (the per-token function), ``progress`` (resume), ``execute`` (one
process or Ray), ``summary`` (rows and aggregation), ``provenance``, ``runner``, ``submission``.
"""

from irlvla_bench.evaluation.runner import EvaluationResult, evaluate_agent, evaluate_submission
from irlvla_bench.evaluation.submission import SubmissionError, load_submission, validate_submission, write_submission

__all__ = ["EvaluationResult", "SubmissionError", "evaluate_agent", "evaluate_submission", "load_submission",
           "validate_submission", "write_submission"]
