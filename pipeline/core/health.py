"""What the sources' streams are doing: connected or not, reconnects, frame rate and the age
of the last frame, for ``/metrics`` and for the health checks (a live stream that has sent
no frame for longer than its read timeout makes the graph unhealthy)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

#: seconds of frame arrivals a stream's frame rate is measured over
FPS_WINDOW_S = 5.0
#: the events a source's ``events`` port sends that say whether its stream is connected
_UP = frozenset({"connected", "reconnected"})
_DOWN = frozenset({"disconnected", "connect_failed", "gave_up"})


class Phase(StrEnum):
    """Where a run is: only ``running`` is healthy."""

    STARTING = "starting"  #: nodes are opening (models loading, files checked)
    RUNNING = "running"
    STOPPING = "stopping"  #: asked to stop, or an error: what is in flight drains
    FINISHED = "finished"


@dataclass
class StreamHealth:
    """One stream of one source."""

    node: str
    #: seconds without a frame after which a live stream counts as stalled; None: not live
    timeout_s: float | None
    since: float = field(default_factory=time.monotonic)  #: when the stream was first seen
    connected: bool = False
    reconnects: int = 0
    frames: int = 0
    last_frame: float | None = None  #: monotonic clock of the last frame
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=512))

    def fps(self, now: float) -> float:
        """Frames per second over the last :data:`FPS_WINDOW_S` seconds."""
        recent = [t for t in self.arrivals if now - t <= FPS_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def silent_s(self, now: float) -> float:
        """Seconds since the last frame (or since the stream was first seen)."""
        return now - (self.last_frame if self.last_frame is not None else self.since)

    def stalled(self, now: float) -> bool:
        """A live stream that has sent no frame for longer than its read timeout."""
        return self.timeout_s is not None and self.silent_s(now) > self.timeout_s


class StreamBoard:
    """Every running stream's :class:`StreamHealth`, written by the executor as sources
    hand over frames, events and stream ends; read by the HTTP server's thread."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], StreamHealth] = {}
        #: the number of each stream's current output segment (kept after the stream ends:
        #: a sink may open its output after a short stream has already ended)
        self.segments: dict[str, int] = {}
        self._lock = threading.Lock()

    def watch(self, node: str, stream: str, timeout_s: float | None, segment: int = 1) -> None:
        """A source starts reading ``stream``: from now on it is expected to send frames, at
        most ``timeout_s`` apart (None: it may pause, as a file does). Its outputs are
        numbered from ``segment`` (a camera that moved between machines goes on in a new
        segment)."""
        with self._lock:
            self.streams[(node, stream)] = StreamHealth(node, timeout_s)
            self.segments[stream] = segment

    def segment(self, stream: str) -> int:
        """The segment ``stream``'s outputs are in now (1 unless a source said otherwise)."""
        with self._lock:
            return self.segments.get(stream, 1)

    def _entry(self, node: str, stream: str) -> StreamHealth:
        entry = self.streams.get((node, stream))
        if entry is None:  # a source that does not say when its streams start
            entry = self.streams[(node, stream)] = StreamHealth(node, None)
        return entry

    def frame(self, node: str, stream: str) -> None:
        """A source handed over a frame of ``stream``."""
        now = time.monotonic()
        with self._lock:
            entry = self._entry(node, stream)
            entry.frames += 1
            entry.last_frame = now
            entry.arrivals.append(now)
            if entry.timeout_s is None:  # a file: it is connected while it reads
                entry.connected = True

    def event(self, node: str, record: Mapping[str, Any]) -> None:
        """A source's event: connects, disconnects and reconnects change the stream's state."""
        name, stream = record.get("event"), record.get("stream")
        if not isinstance(stream, str) or not isinstance(name, str):
            return
        with self._lock:
            entry = self._entry(node, stream)
            if name in _UP:
                entry.connected = True
                entry.reconnects += name == "reconnected"
            elif name in _DOWN:
                entry.connected = False

    def ended(self, node: str, stream: str) -> None:
        """The stream ended (removed, or its source is done): it is no longer watched."""
        with self._lock:
            self.streams.pop((node, stream), None)

    def snapshot(self) -> list[tuple[str, str, StreamHealth]]:
        """(node, stream, a copy of its state) for every stream, sorted."""
        with self._lock:
            return [(node, stream, StreamHealth(
                h.node, h.timeout_s, h.since, h.connected, h.reconnects, h.frames,
                h.last_frame, deque(h.arrivals))) for (node, stream), h in
                sorted(self.streams.items())]
