"""Run the per-token function over work items, in this process or on Ray actors (``irlvla_bench.parallel``);
either way each result is handed to ``on_result`` as soon as it exists."""

from __future__ import annotations

from contextlib import nullcontext
from functools import partial
from typing import Callable, Sequence

from irlvla_bench.evaluation.planners import LazyPlanner
from irlvla_bench.evaluation.records import TokenRecord
from irlvla_bench.evaluation.tokens import TokenContext, WorkItem, process_token


def parallel_session(workers: int):
    """One Ray session for a whole run (caching and planning), or nothing for a single process."""
    if workers > 1:
        from irlvla_bench.parallel import ray_session

        return ray_session(workers)
    return nullcontext()


def local_planner(source, workers: int) -> LazyPlanner | None:
    """The single-process planner, built now: an agent that cannot be built (unknown checkpoint, missing
    weights) fails before the metric cache is prepared rather than after. Ray actors build their own."""
    if workers > 1:
        return None
    planner = LazyPlanner(source)
    planner.ready()
    return planner


def run_items(source, items: Sequence[WorkItem], ctx: TokenContext, *, workers: int,
              on_result: Callable[[TokenRecord], None], planner: LazyPlanner | None = None) -> None:
    if workers > 1 and len(items) > 1:
        from irlvla_bench.parallel import map_with_actors

        map_with_actors(partial(LazyPlanner, source), partial(process_token, ctx=ctx), items, workers=workers,
                        on_result=on_result)
        return
    planner = planner or LazyPlanner(source)
    for item in items:
        on_result(process_token(planner, item, ctx))
