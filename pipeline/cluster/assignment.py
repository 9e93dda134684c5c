"""Which worker runs which stream: the driver's map, with an epoch per stream.

Every placement of a stream (its first, and each move to another worker) raises the
stream's epoch. A worker is told its streams with their epochs and stops any stream whose
epoch it no longer holds, so a camera never has two writers; the epoch also numbers the
stream's output segment, so a moved camera goes on in a new file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Placement:
    """One stream: where it runs (None: nowhere) and its epoch."""

    url: str
    worker: int | None = None
    epoch: int = 0


@dataclass
class Assignment:
    """Streams spread over live workers, at most ``limit`` per worker (None: no limit).

    Methods return the events they cause (``assigned``, ``reassigned``, ``unassigned``,
    ``removed``) as JSON-ready records.
    """

    limit: int | None = None
    streams: dict[str, Placement] = field(default_factory=dict)
    alive: set[int] = field(default_factory=set)

    def load(self, worker: int) -> int:
        """How many streams ``worker`` runs."""
        return sum(1 for p in self.streams.values() if p.worker == worker)

    def share(self, worker: int) -> list[dict[str, Any]]:
        """The ``{stream, url, segment}`` entries ``worker`` should run, sorted by name."""
        return [{"stream": name, "url": p.url, "segment": p.epoch}
                for name, p in sorted(self.streams.items()) if p.worker == worker]

    def unassigned(self) -> list[str]:
        """Streams that run nowhere, sorted."""
        return sorted(n for n, p in self.streams.items() if p.worker is None)

    def _place(self, name: str, why: str) -> dict[str, Any]:
        """Put ``name`` on the least loaded live worker with room (lowest number on ties)."""
        placement = self.streams[name]
        before = placement.worker
        room = [w for w in sorted(self.alive) if self.limit is None or self.load(w) < self.limit]
        if not room:
            placement.worker = None
            return {"event": "unassigned", "stream": name, "reason": why}
        placement.worker = min(room, key=self.load)
        placement.epoch += 1
        event = "assigned" if before is None and placement.epoch == 1 else "reassigned"
        return {"event": event, "stream": name, "worker": placement.worker,
                "epoch": placement.epoch, "reason": why}

    def set_streams(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make the streams these ``{stream, url}`` entries: new ones are placed, missing
        ones removed, and one whose URL changed starts again in a new epoch."""
        wanted = {str(e["stream"]): str(e["url"]) for e in entries}
        events: list[dict[str, Any]] = []
        for name in sorted(set(self.streams) - set(wanted)):
            del self.streams[name]
            events.append({"event": "removed", "stream": name})
        for name, url in wanted.items():
            placement = self.streams.get(name)
            if placement is None:
                self.streams[name] = Placement(url)
                events.append(self._place(name, "added"))
            elif placement.url != url:
                placement.url = url
                placement.epoch += 1  # the same worker restarts it, in a new segment
        return events + self.fill("room freed")

    def join(self, worker: int) -> list[dict[str, Any]]:
        """``worker`` is alive (again): streams that run nowhere are placed."""
        self.alive.add(worker)
        return self.fill("worker joined")

    def fill(self, why: str) -> list[dict[str, Any]]:
        """Place the streams that run nowhere, where there is room now."""
        events = [self._place(name, why) for name in self.unassigned()]
        return [e for e in events if e["event"] != "unassigned"]

    def lose(self, worker: int, why: str) -> list[dict[str, Any]]:
        """``worker`` is gone: its streams move to the others (or run nowhere)."""
        self.alive.discard(worker)
        orphans = sorted(n for n, p in self.streams.items() if p.worker == worker)
        for name in orphans:
            self.streams[name].worker = None
        return [self._place(name, why) for name in orphans]

    def restart(self, worker: int) -> list[dict[str, Any]]:
        """``worker`` restarted in place and lost its streams: it runs them again, each in
        a new epoch (and so a new file, beside what the old process wrote)."""
        events = []
        for name, placement in sorted(self.streams.items()):
            if placement.worker == worker:
                placement.epoch += 1
                events.append({"event": "reassigned", "stream": name, "worker": worker,
                               "epoch": placement.epoch, "reason": "worker restarted"})
        return events
