"""Edges: bounded queues between nodes, with a named flow-control policy.

Every node has one :class:`Inbox` that holds one bounded deque per input edge. Its workers
take items in arrival order across its edges; producers block or drop by the edge's policy.
End of stream and stream markers are never dropped and never wait for room.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from .streams import StreamEnded, StreamStarted


class EdgePolicy(StrEnum):
    """What a producer does when the edge to a slower consumer is full.

    ``block``: the producer waits. Lossless, so it is the default for files; a slow stage
    slows everything before it and end-to-end latency grows up to the queue's capacity.
    ``drop_oldest``: the oldest queued item is discarded (and counted) to make room, so the
    consumer always sees the newest frames: latency stays bounded, throughput is the
    consumer's. The default after live sources, where the newest picture matters most.
    ``backlog``: lossless without holding the producer back: the queue grows, up to its
    capacity (a larger one: :data:`BACKLOG_SIZE` by default), and only past that the oldest
    is dropped and counted. Its depth per stream is reported: a consumer slower than a
    camera shows as a growing backlog, not as silent loss. The default on the way from a
    live source to a recording.
    """

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    BACKLOG = "backlog"


DEFAULT_POLICY = EdgePolicy.BLOCK
#: capacity of a backlog edge the graph does not size: 20 s of a 30 fps camera's pictures
#: (copied packets are small; decoded 1080p frames take about 3 MB each)
BACKLOG_SIZE = 600


class EndOfStream:
    """Marker sent once down every edge after the producer's last item."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "EOS"


EOS = EndOfStream()


def _control(item: Any) -> bool:
    """End of stream and stream markers: never dropped, never held back for room."""
    return item is EOS or isinstance(item, StreamStarted | StreamEnded)


class Edge:
    """One connection ``src.port -> dst.port``: a bounded FIFO inside ``dst``'s inbox."""

    def __init__(self, inbox: Inbox, src: str, src_port: str, dst: str, dst_port: str,
                 capacity: int, policy: EdgePolicy) -> None:
        self.inbox = inbox
        self.src, self.src_port, self.dst, self.dst_port = src, src_port, dst, dst_port
        self.capacity = capacity
        self.policy = policy
        self.items: deque[tuple[int, Any]] = deque()
        self.space = threading.Condition(inbox.lock)
        self.dropped = 0
        self.max_depth = 0
        self.finished = False  # EOS was taken by the consumer

    def backlog(self) -> dict[str, int]:
        """Items queued now, by stream (items that belong to none are left out)."""
        with self.inbox.lock:
            streams = [getattr(item, "stream", None) for _, item in self.items]
        depth: dict[str, int] = {}
        for stream in streams:
            if isinstance(stream, str):
                depth[stream] = depth.get(stream, 0) + 1
        return depth

    @property
    def label(self) -> str:
        """``src.port -> dst.port``."""
        return f"{self.src}.{self.src_port} -> {self.dst}.{self.dst_port}"

    def put(self, item: Any) -> None:
        """Queue ``item``; blocks or drops by policy. Discards if the consumer has closed."""
        inbox = self.inbox
        control = _control(item)
        with inbox.lock:
            items = self.items
            if len(items) >= self.capacity and not control:
                if self.policy is not EdgePolicy.BLOCK:
                    self._drop_oldest()
                else:
                    while len(items) >= self.capacity and not inbox.closed:
                        self.space.wait()
            if inbox.closed:
                return
            items.append((inbox.next_seq, item))
            inbox.next_seq += 1
            if len(items) > self.max_depth and not control:
                self.max_depth = len(items)  # markers may go past capacity; they are no frames
            inbox.ready.notify_all()

    def _drop_oldest(self) -> None:
        """Discard the oldest items until one fits, counting each; control items stay."""
        items = self.items
        position = 0
        while len(items) >= self.capacity and position < len(items):
            if _control(items[position][1]):
                position += 1
            else:
                del items[position]
                self.dropped += 1


#: a replica's test of whether an item is its to take
Accepts = Callable[[Any], bool]


class Inbox:
    """The input side of one node: its edges, one lock, arrival order across edges."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)
        self.edges: list[Edge] = []
        self.next_seq = 0
        self.closed = False
        self.taken = 0  # sequence numbers handed to workers, for replica ordering

    def close(self) -> None:
        """Stop accepting items and wake everyone: producers discard, ``get`` returns None."""
        with self.lock:
            self.closed = True
            for edge in self.edges:
                edge.items.clear()
                edge.space.notify_all()
            self.ready.notify_all()

    def depth(self) -> int:
        """Items queued across all edges."""
        return sum(len(e.items) for e in self.edges)

    def _oldest(self, accepts: Accepts | None) -> tuple[Edge, int] | None:
        """The edge and position of the oldest item this worker may take."""
        best: tuple[Edge, int] | None = None
        best_seq = 0
        for edge in self.edges:
            for position, (seq, item) in enumerate(edge.items):
                if accepts is not None and not accepts(item):
                    continue  # another replica's stream: not in this worker's way
                if item is EOS and position:
                    break  # end of stream waits until every item before it is taken
                if best is None or seq < best_seq:
                    best, best_seq = (edge, position), seq
                break
        return best

    def get(self, batch: int = 1, timeout_s: float = 0.0,
            accepts: Accepts | None = None) -> tuple[int, Edge, list[Any]] | None:
        """Wait for the oldest item; return ``(ticket, edge, items)``, or None once closed.

        With ``batch > 1``, frames on the same edge are gathered up to ``batch``, waiting up to
        ``timeout_s`` for more; a marker or an EOS is never gathered into a batch. ``ticket``
        numbers the takes, so replicas can put their outputs back in order. ``accepts``
        limits a replica to its own streams' items (stream affinity).
        """
        with self.lock:
            while True:
                if self.closed:
                    return None
                found = self._oldest(accepts)
                if found is not None:
                    break
                self.ready.wait()
            edge, position = found
            first = edge.items[position][1]
            del edge.items[position]
            taken = [first]
            if batch > 1 and not _control(first):
                self._gather(edge, taken, batch, timeout_s, accepts)
            edge.space.notify(len(taken))
            if first is EOS:
                edge.finished = True
            ticket = self.taken
            self.taken += 1
            return ticket, edge, taken

    def _gather(self, edge: Edge, taken: list[Any], batch: int, timeout_s: float,
                accepts: Accepts | None) -> None:
        deadline = time.monotonic() + timeout_s
        while len(taken) < batch and not self.closed:
            position = 0
            while position < len(edge.items) and len(taken) < batch:
                item = edge.items[position][1]
                if accepts is not None and not accepts(item):
                    position += 1
                    continue
                if _control(item):
                    return  # a batch ends before a marker or the end of stream
                taken.append(item)
                del edge.items[position]
            if len(taken) >= batch:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            # Let producers blocked on this full edge refill it while we wait.
            edge.space.notify_all()
            self.ready.wait(remaining)

    def all_finished(self) -> bool:
        """Whether every edge has delivered its EOS."""
        return all(e.finished for e in self.edges)
