"""``/metrics`` (Prometheus' text format, from prometheus-client), ``/healthz`` and
``/readyz`` for a running graph, served on the embedded HTTP server (:mod:`.web`).

The figures are read from the graph's :class:`~pipeline.core.metrics.Metrics` when
Prometheus scrapes, not pushed on every frame: the video path pays nothing for them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..core.errors import ParameterError
from ..core.graph import parse_address
from ..core.health import Phase
from ..core.metrics import LATENCY_BUCKETS, Metrics
from . import web

log = logging.getLogger("vidgraph")
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Address:
    """Where the metrics and health checks are served."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, where: str) -> Address:
        """``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6); ``where`` names the option
        in the error."""
        found = parse_address(text, DEFAULT_HOST)
        if found is None:
            raise ParameterError(f"{where}: '{text}' is not PORT or HOST:PORT (port 0-65535)")
        return cls(*found)


class GraphCollector(Collector):
    """Turns a run's :class:`Metrics` into Prometheus metric families at scrape time."""

    def __init__(self, metrics: Metrics, graph: str) -> None:
        self.metrics = metrics
        self.graph = graph

    def collect(self) -> Iterator[Metric]:
        yield from self._graph()
        yield from self._nodes()
        yield from self._streams()
        yield from _gpu_memory()

    def _graph(self) -> Iterator[Metric]:
        phase = GaugeMetricFamily("vidgraph_graph_phase", "1 for the phase the run is in",
                                  labels=["graph", "phase"])
        current = self.metrics.current_phase()
        for each in Phase:
            phase.add_metric([self.graph, str(each)], float(each is current))
        uptime = GaugeMetricFamily("vidgraph_graph_uptime_seconds", "seconds since the run "
                                   "started", labels=["graph"])
        uptime.add_metric([self.graph], self.metrics.elapsed())
        yield from (phase, uptime)

    def _nodes(self) -> Iterator[Metric]:
        frames = CounterMetricFamily("vidgraph_node_frames", "frames a node handled (a "
                                     "source: produced), by stream", labels=["node", "stream"])
        dropped = CounterMetricFamily("vidgraph_node_dropped_frames", "frames dropped on the "
                                      "node's inputs (full queues of live edges)", labels=["node"])
        errors = CounterMetricFamily("vidgraph_node_errors", "errors in the node (skipped "
                                     "inputs included)", labels=["node"])
        busy = CounterMetricFamily("vidgraph_node_busy_seconds", "seconds the node spent "
                                   "working", labels=["node"])
        depth = GaugeMetricFamily("vidgraph_node_queue_depth", "items waiting on the node's "
                                  "inputs", labels=["node"])
        events = CounterMetricFamily("vidgraph_node_events", "events the node emitted, by name",
                                     labels=["node", "event"])
        counted = CounterMetricFamily("vidgraph_node_counted", "what the node counts (damaged "
                                      "packets, frames lost, ...), by name",
                                      labels=["node", "what"])
        latency = HistogramMetricFamily("vidgraph_node_latency_seconds", "seconds from a "
                                        "frame's capture to the node having handled it",
                                        labels=["node"])
        for name, node in self.metrics.nodes.items():
            counts, total, by_stream = node.histogram()
            for stream, n in sorted(by_stream.items()):
                frames.add_metric([name, stream], n)
            dropped.add_metric([name], sum(e.dropped for e in node.edges))
            errors.add_metric([name], node.errors)
            busy.add_metric([name], node.busy_s)
            depth.add_metric([name], sum(len(e.items) for e in node.edges))
            for event, n in sorted(dict(node.events).items()):
                events.add_metric([name, event], n)
            for what, n in sorted(dict(node.counters).items()):
                counted.add_metric([name, what], n)
            if sum(counts):
                cumulative, buckets = 0, []
                for bound, n in zip([*LATENCY_BUCKETS, math.inf], counts, strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                latency.add_metric([name], buckets, total)
        yield from (frames, dropped, errors, busy, depth, events, counted, latency)

    def _streams(self) -> Iterator[Metric]:
        labels = ["node", "stream"]
        fps = GaugeMetricFamily("vidgraph_stream_fps", "frames per second a stream's source "
                                "produced over the last 5 s", labels=labels)
        connected = GaugeMetricFamily("vidgraph_stream_connected", "1 while the stream is "
                                      "connected", labels=labels)
        reconnects = CounterMetricFamily("vidgraph_stream_reconnects", "times the stream came "
                                         "back after a disconnect", labels=labels)
        age = GaugeMetricFamily("vidgraph_stream_last_frame_age_seconds", "seconds since the "
                                "stream's last frame", labels=labels)
        now = time.monotonic()
        for node, stream, health in self.metrics.streams.snapshot():
            fps.add_metric([node, stream], health.fps(now))
            connected.add_metric([node, stream], float(health.connected))
            reconnects.add_metric([node, stream], health.reconnects)
            age.add_metric([node, stream], health.silent_s(now))
        yield from (fps, connected, reconnects, age)


def _gpu_memory() -> Iterator[Metric]:
    """Memory PyTorch holds on each GPU it has used (none on a machine without one)."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return
    allocated = GaugeMetricFamily("vidgraph_gpu_memory_allocated_bytes", "GPU memory in "
                                  "tensors", labels=["device"])
    reserved = GaugeMetricFamily("vidgraph_gpu_memory_reserved_bytes", "GPU memory PyTorch's "
                                 "allocator holds", labels=["device"])
    for index in range(torch.cuda.device_count()):
        allocated.add_metric([f"cuda:{index}"], torch.cuda.memory_allocated(index))
        reserved.add_metric([f"cuda:{index}"], torch.cuda.memory_reserved(index))
    yield from (allocated, reserved)


def health(metrics: Metrics, ready: bool = False) -> tuple[bool, str]:
    """(healthy, why in words). Healthy: running, and no live stream silent for longer
    than its read timeout. ``ready`` also wants every live stream connected."""
    phase = metrics.current_phase()
    if phase is not Phase.RUNNING:
        return False, f"{phase}\n"
    now = time.monotonic()
    problems = []
    for node, stream, state in metrics.streams.snapshot():
        if state.stalled(now):
            problems.append(f"stream '{stream}' (node '{node}'): no frame for "
                            f"{state.silent_s(now):.1f} s (read timeout {state.timeout_s:g} s)")
        elif ready and state.timeout_s is not None and not state.connected:
            problems.append(f"stream '{stream}' (node '{node}'): not connected")
    return not problems, "\n".join(problems or ["ok"]) + "\n"


class Monitor:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` for one run on ``address``."""

    def __init__(self, metrics: Metrics, graph: str, address: Address) -> None:
        self.metrics = metrics
        self.address = address
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GraphCollector(metrics, graph))
        ProcessCollector(registry=self.registry)  # RSS, CPU seconds, open files
        self.routes = [Route("/metrics", self._metrics), Route("/healthz", self._health),
                       Route("/readyz", self._ready)]
        self.server: web.WebServer | None = None

    def start(self) -> str:
        """Listen; returns the metrics' URL."""
        self.server = web.share(self.routes, self.address.host, self.address.port)
        url = self.server.url("/metrics")
        log.info("metrics on %s, health checks on /healthz and /readyz", url)
        return url

    def stop(self) -> None:
        """Stop serving."""
        if self.server is not None:
            web.release(self.server, self.routes)
            self.server = None

    async def _metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def _health(self, request: Request) -> Response:
        ok, text = health(self.metrics)
        return PlainTextResponse(text, status_code=200 if ok else 503,
                                 headers={"Cache-Control": "no-store"})

    async def _ready(self, request: Request) -> Response:
        ok, text = health(self.metrics, ready=True)
        return PlainTextResponse(text, status_code=200 if ok else 503,
                                 headers={"Cache-Control": "no-store"})
