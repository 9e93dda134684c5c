"""What the benchmarks share: a rate measured after a warm-up, for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def rate(run: Callable[[], Any], items: int, seconds: float) -> float:
    """Items per second of ``run`` (which handles ``items`` items), after a warm-up."""
    run()
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or runs == 0:
        run()
        runs += 1
    return round(runs * items / (time.perf_counter() - started), 1)
