"""Reward-hacking check (issue 9, part 3): did RL improve what the reward world model *predicts* more than what
the exact scorer *measures*?

A policy optimised against a learned reward can find trajectories the model over-rates. The symptom is a gap
between the RWM's predicted gain (RL over IL) and the exact scorer's gain on the same tokens, per sub-metric.
This module only does the arithmetic on four token-indexed tables, so it is usable on any predictions and
testable on constructed numbers.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from reports.compare import METRICS

DEFAULT_TOLERANCE = 0.01
COLUMNS = ["n", "predicted_a", "predicted_b", "predicted_gain", "exact_a", "exact_b", "exact_gain", "excess",
           "hacking"]


def reward_hacking_table(
    rwm_pred_a: pd.DataFrame,
    rwm_pred_b: pd.DataFrame,
    exact_a: pd.DataFrame,
    exact_b: pd.DataFrame,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    metrics: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per sub-metric: RWM-predicted mean gain (B - A) next to the exact mean gain, and a hacking flag.

    Inputs are indexed by token with one column per sub-metric (A = the reference policy, e.g. IL; B = the
    policy under test, e.g. RL). Means are over the tokens present in all four tables with all four values
    finite, per metric, so predicted and exact gains are measured on exactly the same tokens.

    ``hacking`` is True where ``predicted_gain - exact_gain > tolerance``: the model promises more than the
    scorer delivers. Returns a DataFrame indexed by metric with the columns of ``COLUMNS``; metrics default to
    the ones present in all four tables, in the order of ``reports.compare.METRICS``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance}")
    frames = {"rwm_pred_a": rwm_pred_a, "rwm_pred_b": rwm_pred_b, "exact_a": exact_a, "exact_b": exact_b}
    for name, frame in frames.items():
        if not frame.index.is_unique:
            raise ValueError(f"{name}: the index must be unique tokens; {frame.index[frame.index.duplicated()][0]!r} "
                             "appears more than once")
    if metrics is None:
        common = set.intersection(*(set(f.columns) for f in frames.values()))
        metrics = [m for m in METRICS if m in common] + sorted(common - set(METRICS))
        if not metrics:
            raise ValueError("the four tables share no metric column")
    else:
        for name, frame in frames.items():
            missing = [m for m in metrics if m not in frame.columns]
            if missing:
                raise ValueError(f"{name}: missing metric column(s) {missing}")

    tokens = rwm_pred_a.index
    for frame in (rwm_pred_b, exact_a, exact_b):
        tokens = tokens.intersection(frame.index)
    if len(tokens) == 0:
        raise ValueError("no token is present in all four tables")

    records = []
    for metric in metrics:
        values = np.column_stack([frame.loc[tokens, metric].to_numpy(dtype=float) for frame in frames.values()])
        values = values[np.isfinite(values).all(axis=1)]
        n = len(values)
        pa, pb, ea, eb = values.mean(axis=0) if n else (np.nan,) * 4
        predicted_gain, exact_gain = pb - pa, eb - ea
        excess = predicted_gain - exact_gain
        records.append({"metric": metric, "n": n, "predicted_a": pa, "predicted_b": pb,
                        "predicted_gain": predicted_gain, "exact_a": ea, "exact_b": eb, "exact_gain": exact_gain,
                        "excess": excess, "hacking": bool(n and excess > tolerance)})
    return pd.DataFrame.from_records(records, columns=["metric", *COLUMNS]).set_index("metric")


HACKING_EXPLANATION = (
    "Per sub-metric, the RWM-predicted mean gain of policy B over policy A next to the exact scorer's gain on the "
    "same held-out tokens. excess = predicted - exact; a metric is flagged as hacked when the excess exceeds the "
    "tolerance: the learned reward promises more than the exact scorer delivers.")


def hacking_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown (gains signed), with the explanation above it."""
    lines = ["# Reward hacking check", "", HACKING_EXPLANATION, "",
             "| metric | n | predicted gain | exact gain | excess | hacking |", "|---|---|---|---|---|---|"]
    for metric, row in table.iterrows():
        lines.append(f"| {metric} | {int(row['n'])} | {row['predicted_gain']:+.4f} | {row['exact_gain']:+.4f} | "
                     f"{row['excess']:+.4f} | {'**yes**' if row['hacking'] else 'no'} |")
    return "\n".join(lines) + "\n"


def hacking_html(table: pd.DataFrame) -> str:
    """A standalone HTML page of the table, so the pipeline's index links the check like every other report."""
    import html

    body = table.to_html(float_format=lambda v: f"{v:+.4f}", border=0)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Reward hacking check</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style></head><body>"
            f"<h1>Reward hacking check</h1><p>{html.escape(HACKING_EXPLANATION)}</p>{body}</body></html>")
