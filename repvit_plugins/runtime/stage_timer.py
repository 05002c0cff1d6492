"""An opt-in timing hook: the pipeline and the batch job report how long each stage took.

Pass a :class:`StageTimer` as ``timer=`` to :class:`~repvit_plugins.grounding.GroundedSAM` or the labelling job;
with ``timer=None`` (the default) :func:`timed` is a ``nullcontext`` and costs nothing measurable. Benchmarks read
the stage times instead of wrapping the pipeline's methods, so they time exactly the code users run.
"""
from __future__ import annotations

import contextlib
import time
from typing import ContextManager, Iterator

__all__ = ["StageTimer", "timed"]


class StageTimer:
    """Seconds per named stage since the last :meth:`take` (a stage entered twice adds up)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def take(self) -> dict[str, float]:
        """The stage times collected so far, and start afresh."""
        seconds, self.seconds = self.seconds, {}
        return seconds


def timed(timer: StageTimer | None, name: str) -> ContextManager[None]:
    """``timer.stage(name)``, or a no-op when there is no timer."""
    return timer.stage(name) if timer is not None else contextlib.nullcontext()
