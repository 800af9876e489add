"""Summation exactly as the official tools do it."""

from __future__ import annotations

from collections.abc import Iterable


def sequential_sum(values: Iterable[float]) -> float:
    """Left-to-right IEEE double sum, like ``sum()`` on Python <= 3.11.

    The official numbers come from Python 3.11's ``sum``; Python 3.12 switched ``sum`` of floats to compensated
    summation and numpy uses pairwise summation, either of which can change the last digits.
    """
    total: float = 0
    for v in values:
        total = total + v
    return total


def mean(values: Iterable[float]) -> float:
    """``sum(xs) / len(xs)`` as the tools write it (ZeroDivisionError when empty, as theirs)."""
    vals = list(values)
    return sequential_sum(vals) / len(vals)
