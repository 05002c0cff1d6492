"""Wall-clock timing for the benchmark scripts: the median of repeated runs after a warm-up."""
from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence, TypeVar

__all__ = ["median_seconds", "per_input_seconds"]

T = TypeVar("T")
R = TypeVar("R")


def median_seconds(run: Callable[[], object], iters: int, warmup: int) -> float:
    """Median wall time of ``run()`` in seconds over ``iters`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_input_seconds(run: Callable[[T], R], inputs: Sequence[T], passes: int, warmup: int) -> list[tuple[float, R]]:
    """``(seconds, result)`` of ``run(x)`` for every input over ``passes`` passes, after ``warmup`` untimed passes."""
    for _ in range(warmup):
        for x in inputs:
            run(x)
    timed = []
    for _ in range(passes):
        for x in inputs:
            start = time.perf_counter()
            result = run(x)
            timed.append((time.perf_counter() - start, result))
    return timed
