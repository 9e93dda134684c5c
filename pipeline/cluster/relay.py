"""The two nodes that carry events between a cluster's workers and its driver.

A sink fed only by events (``jsonl_sink``, ``mqtt_sink`` on a source's ``events``) runs
once, on the driver, for the whole cluster. On each worker a :class:`Gather` takes its
place and keeps the records; the driver fetches them with every heartbeat and a
:class:`Relay` source hands them to the real sinks, beside the cluster's own events
(``assigned``, ``reassigned``, ``unassigned``, ``removed``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from pydantic import Field

from ..core.node import BaseParams, Emit, Params, Port, PortKind, Sink, Source

#: how often the relay looks whether the driver is done
_POLL_S = 0.2


class GatherParams(Params):
    """Parameters of :class:`Gather`."""

    key: str = Field(description="the output gathered, as 'node.port'")


class Gather(Sink):
    """Keeps the records of one events output for the driver to fetch."""

    name = "cluster_gather"
    inputs = (Port("in", optional=True), Port("events", PortKind.EVENTS))
    Params = GatherParams
    params: GatherParams

    def __init__(self, params: GatherParams, context: Any) -> None:
        super().__init__(params, context)
        self.kept: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def receive(self, port: str, item: Any) -> None:
        if isinstance(item, dict):
            with self._lock:
                self.kept.append((self.params.key, item))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        """The records kept since the last call, as (``node.port``, record)."""
        with self._lock:
            taken, self.kept = self.kept, []
        return taken


class RelayParams(Params):
    """Parameters of :class:`Relay`."""

    ports: list[str] = Field(description="one events output per gathered 'node.port'")


class Relay(Source):
    """Emits, on the driver, the records the workers gathered and the cluster's events."""

    name = "cluster_relay"
    Params = RelayParams
    params: RelayParams

    def __init__(self, params: RelayParams, context: Any) -> None:
        super().__init__(params, context)
        self.feed: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.done = threading.Event()

    @classmethod
    def output_ports(cls, params: BaseParams) -> tuple[Port, ...]:
        assert isinstance(params, RelayParams)
        return tuple(Port(key, PortKind.EVENTS, optional=True) for key in params.ports)

    @property
    def live(self) -> bool:
        return True

    def generate(self) -> Iterator[Emit]:
        while True:
            try:
                key, record = self.feed.get(timeout=_POLL_S)
            except queue.Empty:
                if self.done.is_set():  # set once the workers have stopped
                    return
                continue
            yield Emit(key, record)
