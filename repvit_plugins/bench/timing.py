"""Wall-clock timing for the benchmark scripts: the median of repeated runs after a warm-up."""
from __future__ import annotations

import statistics
import time
from typing import Callable

__all__ = ["median_seconds"]


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
