"""Timing helpers shared by the benchmarks: medians of wall-clock (and this process's CPU) seconds.

The benchmarks run as scripts (``python benchmarks/NAME.py``), so this folder is on
``sys.path`` and they import it as ``_timing``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call; CPU time is steadier on a shared machine."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def median_times(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds over ``repeats`` calls."""
    runs = [timed(fn) for _ in range(repeats)]
    return statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)


def median_seconds(fn: Callable[[], object], repeats: int, *, warmup: bool = True) -> float:
    """Median wall seconds over ``repeats`` calls, after one untimed call (numba compilation, caches)."""
    if warmup:
        fn()
    return statistics.median(timed(fn)[0] for _ in range(repeats))
