"""Per-node counters and latencies, the live progress line, and the ``--stats`` JSON."""

from __future__ import annotations

import bisect
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .edge import Edge, EdgePolicy
from .health import Phase, StreamBoard

LATENCY_SAMPLES = 4096
#: upper bounds (seconds) of the capture-to-node latency histogram's buckets
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class NodeMetrics:
    """Figures of one node. The fixed counters are written by its worker threads; the
    named ``counters`` (damaged packets, frames lost, ...) by any thread, through
    :meth:`count`."""

    frames_in: int = 0
    frames_out: int = 0
    errors: int = 0
    skipped: int = 0
    busy_s: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    edges: list[Edge] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)  #: events emitted, by name
    counters: dict[str, int] = field(default_factory=dict)  #: what the node counts, by name
    #: per-stream state entries the node holds now (set by the executor)
    held: Callable[[], int] | None = None
    #: frames handled (a source's: produced), by stream
    stream_frames: dict[str, int] = field(default_factory=dict)
    #: capture-to-node latencies: counts per bucket of :data:`LATENCY_BUCKETS` (+ the rest)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def handled(self, streams: Iterable[str], latencies: Iterable[float] = ()) -> None:
        """Frames of ``streams`` were handled, ``latencies`` seconds after their capture."""
        with self._lock:
            for stream in streams:
                self.stream_frames[stream] = self.stream_frames.get(stream, 0) + 1
            for seconds in latencies:
                self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
                self.latency_sum += seconds

    def histogram(self) -> tuple[list[int], float, dict[str, int]]:
        """(bucket counts, sum of latencies, frames by stream), read together."""
        with self._lock:
            return list(self.latency_counts), self.latency_sum, dict(self.stream_frames)

    def count(self, what: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``what``; safe from any thread."""
        with self._lock:
            self.counters[what] = self.counters.get(what, 0) + n

    def skip(self) -> None:
        """An input the node itself skipped (an error it went past)."""
        with self._lock:
            self.errors += 1
            self.skipped += 1

    def snapshot(self) -> dict[str, Any]:
        """Plain numbers for JSON: counts, busy time, latency percentiles (ms), edges."""
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 3) if lat else None

        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "errors": self.errors,
            "skipped": self.skipped,
            "busy_s": round(self.busy_s, 4),
            "latency_ms_p50": pct(0.50),
            "latency_ms_p95": pct(0.95),
            "drops": sum(e.dropped for e in self.edges),
            "queue_depth": sum(len(e.items) for e in self.edges),
            "queue_depth_max": max((e.max_depth for e in self.edges), default=0),
            "events": dict(self.events),
            "counts": dict(self.counters),
            "streams_held": self.held() if self.held is not None else 0,
            "inputs": {e.label: {"policy": str(e.policy), "capacity": e.capacity,
                                 "dropped": e.dropped, "max_depth": e.max_depth,
                                 **({"backlog": e.backlog()}
                                    if e.policy is EdgePolicy.BACKLOG else {})}
                       for e in self.edges},
        }


class Metrics:
    """All nodes' metrics plus run totals."""

    def __init__(self, names: list[str], stop_requested: threading.Event | None = None) -> None:
        self.nodes = {n: NodeMetrics() for n in names}
        self.started = time.monotonic()
        self.finished: float | None = None
        self.phase = Phase.STARTING  #: set by the executor: starting, running, finished
        self.stop_requested = stop_requested
        self.streams = StreamBoard()

    def current_phase(self) -> Phase:
        """The run's phase; a running graph asked to stop (or failing) is stopping."""
        if self.phase is Phase.RUNNING and self.stop_requested is not None \
                and self.stop_requested.is_set():
            return Phase.STOPPING
        return self.phase

    def elapsed(self) -> float:
        """Seconds since the run started (until it finished)."""
        return (self.finished or time.monotonic()) - self.started

    def to_dict(self, status: str, error: str | None) -> dict[str, Any]:
        """The ``--stats`` document."""
        return {
            "status": status,
            "error": error,
            "elapsed_s": round(self.elapsed(), 3),
            "nodes": {n: m.snapshot() for n, m in self.nodes.items()},
        }

    def write_json(self, path: str | Path, status: str, error: str | None) -> None:
        """Write the ``--stats`` file."""
        Path(path).write_text(json.dumps(self.to_dict(status, error), indent=2) + "\n")


class StatusLine:
    """A live line on stderr, the text ``describe()`` gives, from a thread of its own.

    On a terminal it rewrites one line; otherwise it prints a line every ``interval_s * 10``.
    """

    def __init__(self, describe: Callable[[], str], stream: TextIO | None = None,
                 interval_s: float = 0.5) -> None:
        self.describe = describe
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval_s = interval_s if self.tty else interval_s * 10
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)

    def start(self) -> None:
        """Start printing."""
        self._thread.start()

    def stop(self) -> None:
        """Print the final line and stop."""
        self._stop.set()
        self._thread.join()
        self._print(final=True)

    def _print(self, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + self.describe() + ("\n" if final else ""))
        else:
            self.stream.write(self.describe() + "\n")
        self.stream.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._print()


class Progress(StatusLine):
    """The progress of a run: frames done, fps, ETA when the total is known."""

    def __init__(self, metrics: Metrics, counted: list[str], total: int | None,
                 stream: TextIO | None = None, interval_s: float = 0.5) -> None:
        super().__init__(self.line, stream, interval_s)
        self.metrics = metrics
        self.counted = counted
        self.total = total

    def line(self) -> str:
        """The current progress text."""
        done = min((self.metrics.nodes[n].frames_in for n in self.counted), default=0)
        elapsed = max(self.metrics.elapsed(), 1e-9)
        fps = done / elapsed
        text = f"{done} frames"
        if self.total:
            text += f"/{self.total} ({100 * done / self.total:.0f}%)"
        text += f"  {fps:.1f} fps  {elapsed:.1f} s"
        if self.total and fps > 0 and done < self.total:
            text += f"  ETA {(self.total - done) / fps:.0f} s"
        drops = sum(e.dropped for m in self.metrics.nodes.values() for e in m.edges)
        if drops:
            text += f"  {drops} dropped"
        return text
