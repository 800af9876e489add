"""Everything this project knows about Ray, in one place: starting a local session and two ways of running the
same per-item function the single-process path runs (stateless tasks over batches; stateful actors over items).

Ray is optional: nothing here imports it until a parallel run is asked for. Sessions are started without the
dashboard and with ``RAY_AUTH_MODE=disabled`` (this project's machines have no token setup); a session someone
else started (a test, a notebook) is reused and left running.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence


def ray_installed() -> bool:
    from importlib.util import find_spec

    return find_spec("ray") is not None


@contextmanager
def ray_session(num_cpus: int) -> Iterator[Any]:
    """Yield the ``ray`` module with a session running; shut it down afterwards only if it was started here."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    started_here = False
    if not ray.is_initialized():
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        started_here = True
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def map_batches(fn: Callable[..., list], batches: Sequence[list], args: tuple, *, workers: int,
                on_batch: Callable[[list, int], None]) -> None:
    """Run ``fn(batch, *args)`` as one Ray task per batch; ``on_batch(results, len(batch))`` as each finishes."""
    with ray_session(workers) as ray:
        remote = ray.remote(num_cpus=1)(fn)
        pending = {remote.remote(batch, *args): len(batch) for batch in batches}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                on_batch(ray.get(ref), pending.pop(ref))


class _Worker:
    """Actor body: builds its state once (e.g. loads an agent), then applies ``fn(state, item)`` per item."""

    def __init__(self, setup: Callable[[], Any], fn: Callable[[Any, Any], Any]):
        self._state = setup()
        self._fn = fn

    def run(self, item):
        return self._fn(self._state, item)


def map_with_actors(setup: Callable[[], Any], fn: Callable[[Any, Any], Any], items: Sequence[Any], *, workers: int,
                    on_result: Callable[[Any], None]) -> None:
    """``fn(state, item)`` for every item on ``workers`` actors, each holding one ``setup()`` state; results come
    back one item at a time (in completion order) through ``on_result``. Errors raised by ``fn`` or ``setup``
    propagate. Items are handed out as actors become free, so a slow item does not hold up a whole shard."""
    if not items:
        return
    with ray_session(workers) as ray:
        actor_class = ray.remote(num_cpus=1)(_Worker)
        actors = [actor_class.remote(setup, fn) for _ in range(min(workers, len(items)))]
        try:
            queue = list(items)
            pending: dict = {}
            for actor in actors:
                if queue:
                    pending[actor.run.remote(queue.pop(0))] = actor
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    actor = pending.pop(ref)
                    if queue:
                        pending[actor.run.remote(queue.pop(0))] = actor
                    on_result(ray.get(ref))
        finally:
            # Actors hold agents (maybe GPU memory); a session we did not start must not keep them.
            for actor in actors:
                ray.kill(actor)


__all__ = ["map_batches", "map_with_actors", "ray_installed", "ray_session"]
