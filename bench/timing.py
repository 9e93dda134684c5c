"""What the benchmarks share: a rate measured after a warm-up for a fixed time, and the
JSON report with what it was measured on."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def rate(run: Callable[[], Any], items: int, seconds: float) -> float:
    """Items per second of ``run`` (which handles ``items`` items), after a warm-up; on a
    GPU the queued work is waited for before the clock starts and before it stops."""
    run()
    _settle()
    runs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or runs == 0:
        run()
        runs += 1
    _settle()
    return round(runs * items / (time.perf_counter() - started), 1)


def _settle() -> None:
    if torch.cuda.is_initialized():
        torch.cuda.synchronize()


def write_report(path: str, device: torch.device, rows: list[dict[str, Any]],
                 **settings: Any) -> None:
    """Write a benchmark's rows as JSON with what they were measured on."""
    report = {"device": str(device), "torch": str(torch.__version__),
              "torch_threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              **settings, "rows": rows}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
