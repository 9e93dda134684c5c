"""Runs a validated graph: one worker thread per node instance, bounded edges between them.

Flow: sources iterate ``generate()``; stages and sinks take items from their :class:`Inbox`
in arrival order (batched when asked), and emit results to the edges of their outputs.
Every node's work runs under ``torch.inference_mode()``, in the node's :class:`Lane` (its
own CUDA stream on a GPU). Streams: before a source's first frame of a stream the runtime
sends :class:`StreamStarted` down its video outputs, and :class:`StreamEnded` after the last;
nodes get ``stream_started``/``stream_ended`` calls and pass the markers on.
End of stream: a source sends EOS down every output when it returns; a node whose inputs
have all delivered EOS flushes, sends EOS on, and closes. Shutdown: ``stop()`` (first
Ctrl+C) makes sources return so everything drains; ``abort()`` (second Ctrl+C) closes every
inbox so workers exit at once; sinks are closed, and so finalized, in both cases.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import torch

from .device import Lane, lane_for, resolve_device
from .edge import BACKLOG_SIZE, DEFAULT_POLICY, EOS, Accepts, Edge, EdgePolicy, Inbox
from .errors import NodeError, VidgraphError, describe_exception
from .frame import Frame
from .graph import DEFAULT_QUEUE_SIZE, Graph, NodeSpec, OnError
from .health import Phase
from .metrics import Metrics, NodeMetrics
from .node import Emit, Node, NodeContext, PortKind, Sink, Source, Stage
from .ordering import TicketGate
from .packets import VideoPacket
from .streams import StreamEnded, StreamStarted

log = logging.getLogger("vidgraph")
#: capacity of the video edges after a live source (at least; batching raises it)
LIVE_QUEUE_SIZE = 2
#: capacity of the audio and event edges after a live source
LIVE_AUDIO_QUEUE_SIZE = 64

#: what a worker does, in output order, once its input is handled
Delivery = Callable[[], None]


class RunStatus(StrEnum):
    """How a run ended."""

    OK = "ok"  #: every source finished and everything drained
    INTERRUPTED = "interrupted"  #: stopped on request (Ctrl+C); drained, outputs finalized
    ABORTED = "aborted"  #: aborted (second Ctrl+C); outputs finalized with what they had
    FAILED = "failed"  #: a node failed; ``error`` says which, on which frame, and why


@dataclass
class RunResult:
    """The outcome of :meth:`Executor.run`."""

    status: RunStatus
    error: NodeError | None
    metrics: Metrics


def stream_owner(stream: str, replicas: int) -> int:
    """The replica that takes every item of ``stream`` (a hash stable across processes)."""
    return zlib.crc32(stream.encode()) % replicas


class _NodeState:
    """Everything the executor keeps about one node while it runs."""

    def __init__(self, spec: NodeSpec, instances: list[Node], inbox: Inbox | None,
                 metrics: NodeMetrics, aborted: threading.Event) -> None:
        self.spec = spec
        self.name = spec.name
        self.instances = instances
        self.lanes: list[Lane] = [lane_for(inst.device) for inst in instances]
        self.inbox = inbox
        self.metrics = metrics
        self.outputs: dict[str, list[Edge]] = {p.name: [] for p in spec.outputs}
        self.video_outputs = [p.name for p in spec.outputs if p.kind is PortKind.VIDEO]
        #: the outputs whose items belong to a stream (they carry its markers)
        self.stream_outputs = [p.name for p in spec.outputs
                               if p.kind in (PortKind.VIDEO, PortKind.AUDIO, PortKind.PACKETS)]
        self.default_out = spec.outputs[0].name if spec.outputs else None
        self.default_in = spec.cls.inputs[0].name if spec.cls.inputs else None
        self.event_ports = {p.name for p in spec.outputs if p.kind is PortKind.EVENTS}
        self.gate = TicketGate(aborted) if len(instances) > 1 else None
        self.stateful = bool(spec.cls.stream_state) or not spec.cls.replicable
        self.live_workers = len(instances)
        self.lock = threading.Lock()
        self.opened: list[Node] = []
        self.ended_ports: set[str] = set()
        self.failed = False  # set on failure: replicas behind it emit nothing more
        metrics.held = lambda: sum(inst.streams_held() for inst in self.instances)

    def accepts(self, replica: int) -> Accepts | None:
        """What replica ``replica`` may take: with per-stream state, its own streams only."""
        count = len(self.instances)
        if count == 1 or not self.spec.cls.stream_state:
            return None

        def mine(item: Any) -> bool:
            stream = getattr(item, "stream", None)
            if not isinstance(item, Frame | StreamStarted | StreamEnded) or stream is None:
                return True
            return stream_owner(stream, count) == replica

        return mine


class Executor:
    """Builds nodes and edges for a :class:`Graph` and runs it to completion."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.stop_requested = threading.Event()
        self.aborted = threading.Event()
        self.metrics = Metrics(list(graph.nodes), self.stop_requested)
        self.error: NodeError | None = None
        self._error_lock = threading.Lock()
        self.nodes: dict[str, _NodeState] = {}
        self._threads: list[threading.Thread] = []
        self._build()

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        self.to_recordings = self._upstream_of_recordings()
        for name, spec in self.graph.nodes.items():
            try:
                device = resolve_device(spec.settings.device, self.graph.device)
            except VidgraphError as exc:
                raise NodeError(name, exc) from None
            consumed = frozenset(c.src_port for c in self.graph.connections if c.src == name)
            context = NodeContext(name, device, self.stop_requested, frozenset(spec.inputs),
                                  self.metrics, str(spec.settings.on_error), consumed,
                                  self.graph.name)
            try:
                instances = [spec.cls(spec.params, context) for _ in range(spec.settings.replicas)]
            except Exception as exc:
                raise NodeError(name, exc) from exc
            inbox = Inbox() if spec.cls.inputs else None
            self.nodes[name] = _NodeState(spec, instances, inbox, self.metrics.nodes[name],
                                          self.aborted)
        for conn in self.graph.connections:
            dst = self.nodes[conn.dst]
            assert dst.inbox is not None
            settings = dst.spec.settings
            capacity, policy = self._edge_defaults(conn.src, conn.src_port, dst.spec,
                                                   settings.policy)
            edge = Edge(dst.inbox, conn.src, conn.src_port, conn.dst, conn.dst_port,
                        settings.queue_size or capacity, policy)
            dst.inbox.edges.append(edge)
            dst.metrics.edges.append(edge)
            self.nodes[conn.src].outputs[conn.src_port].append(edge)

    def _upstream_of_recordings(self) -> set[str]:
        """The nodes with a recording (``Node.records``) at or after them."""
        found = {name for name, spec in self.graph.nodes.items()
                 if spec.cls.records(spec.params)}
        grew = True
        while grew:
            before = len(found)
            found |= {c.src for c in self.graph.connections if c.dst in found}
            grew = len(found) != before
        return found

    def _edge_defaults(self, src: str, port: str, dst: NodeSpec,
                       asked: EdgePolicy | None) -> tuple[int, EdgePolicy]:
        """Policy and capacity of an edge: the policy the graph ``asked`` for, else the
        default for where the edge is; the capacity that goes with that policy.

        After a live source, frames drop rather than wait: a slow consumer always gets the
        newest picture, and latency stays bounded. The capacity is small but lets a
        batching consumer fill its batches (across streams) and keep its replicas busy.
        On the way to a recording (and for copied packets) nothing may be lost and the
        camera may not be held back: those edges keep a backlog.
        """
        node = self.nodes[src]
        source = node.instances[0]
        kind = next(p.kind for p in node.spec.outputs if p.name == port)
        live = isinstance(source, Source) and source.live
        policy = asked or self._default_policy(live, kind, dst.name)
        if policy is EdgePolicy.BACKLOG:
            return BACKLOG_SIZE, policy
        if not live:
            return DEFAULT_QUEUE_SIZE, policy
        if kind is PortKind.VIDEO:
            size = max(LIVE_QUEUE_SIZE, 2 * dst.settings.batch_size, dst.settings.replicas)
            return size, policy
        return LIVE_AUDIO_QUEUE_SIZE, policy  # small packets and events

    def _default_policy(self, live: bool, kind: PortKind, dst: str) -> EdgePolicy:
        if not live or kind is PortKind.EVENTS:
            return DEFAULT_POLICY
        if kind is PortKind.PACKETS or dst in self.to_recordings:
            return EdgePolicy.BACKLOG
        return EdgePolicy.DROP_OLDEST  # sound too: a gap in it beats a stalled camera

    def expected_frames(self) -> int | None:
        """Frames the sources will produce in all, when every source knows (for the ETA)."""
        counts = [inst.expected_frames() for n in self.nodes.values()
                  for inst in n.instances if isinstance(inst, Source)]
        if not counts or any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)

    def video_sinks(self) -> list[str]:
        """Names of sinks with a connected input of pictures, frames or copied packets
        (progress counts them)."""
        return [n for n, s in self.nodes.items()
                if isinstance(s.instances[0], Sink) and any(
                    p.kind in (PortKind.VIDEO, PortKind.PACKETS) and p.name in s.spec.inputs
                    for p in s.spec.cls.inputs)]

    def streams_held(self) -> dict[str, int]:
        """Per-stream state entries each node holds now (stream lifecycle checks)."""
        return {name: sum(inst.streams_held() for inst in s.instances)
                for name, s in self.nodes.items()}

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask sources to finish; everything in flight drains and sinks finalize."""
        self.stop_requested.set()

    def abort(self) -> None:
        """Stop at once: workers leave their loops, every node (sinks too) is closed."""
        self.stop_requested.set()
        self.aborted.set()
        for node in self.nodes.values():
            if node.inbox is not None:
                node.inbox.close()

    def _fail(self, node: _NodeState, exc: BaseException, frame: Frame | None, *,
              halt: bool = True) -> None:
        """Record the graph's error and stop it. ``halt``: the node emits nothing more from
        now on; a replica's worker passes False and halts at its turn in the output order
        instead, so that frames before the failing one, still in other replicas, get out."""
        if isinstance(exc, NodeError):
            error = exc
        elif frame is not None:
            error = NodeError(node.name, exc, index=frame.index, pts=frame.pts,
                              stream=frame.stream)
        else:
            error = NodeError(node.name, exc)
        with self._error_lock:
            if self.error is None:
                self.error = error
        if halt:
            node.failed = True
        self.stop_requested.set()
        if node.inbox is not None:
            node.inbox.close()

    # -- running -----------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` has opened the nodes."""
        return any(node.opened for node in self.nodes.values())

    def open(self) -> None:
        """Open every node in graph order; on failure close those opened and raise."""
        for node in self.nodes.values():
            for inst in node.instances:
                try:
                    inst.open()
                except Exception as exc:
                    self.close_all()
                    raise NodeError(node.name, exc) from exc
                node.opened.append(inst)

    def close_all(self) -> None:
        """Close every opened instance that is still open (reverse graph order)."""
        for node in reversed(list(self.nodes.values())):
            for inst in list(node.opened):
                self._close(node, inst)

    def _close(self, node: _NodeState, inst: Node) -> None:
        with node.lock:
            if inst not in node.opened:
                return
            node.opened.remove(inst)
        try:
            inst.close()
        except Exception as exc:
            self._fail(node, NodeError(node.name, f"while closing: {describe_exception(exc)}"),
                       None)

    def run(self, on_started: Callable[[], None] | None = None) -> RunResult:
        """Open, run and close the graph; returns when every worker has finished.

        Raises :class:`NodeError` if a node fails to open; failures while running are
        returned in the result. Call from the main thread to keep signal handling responsive.
        A graph already opened (:meth:`open`, to fail early) is not opened again.
        """
        if not self.is_open:
            self.open()
        self.metrics.started = time.monotonic()
        for node in self.nodes.values():
            for i, inst in enumerate(node.instances):
                name = f"node:{node.name}" + (f"#{i}" if len(node.instances) > 1 else "")
                if isinstance(inst, Source):
                    thread = threading.Thread(target=self._source_loop, args=(node, inst),
                                              name=name, daemon=True)
                else:
                    thread = threading.Thread(target=self._worker_loop, args=(node, i),
                                              name=name, daemon=True)
                self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        self.metrics.phase = Phase.RUNNING
        if on_started is not None:
            on_started()
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.1)
        self.metrics.finished = time.monotonic()
        self.close_all()
        self.metrics.phase = Phase.FINISHED
        if self.error is not None:
            status = RunStatus.FAILED
        elif self.aborted.is_set():
            status = RunStatus.ABORTED
        elif self.stop_requested.is_set():
            status = RunStatus.INTERRUPTED
        else:
            status = RunStatus.OK
        return RunResult(status, self.error, self.metrics)

    # -- emitting ----------------------------------------------------------------------------

    def _emit(self, node: _NodeState, result: Any) -> None:
        port: str | None
        if result is None:
            return
        if isinstance(result, list | tuple):
            for item in result:
                self._emit(node, item)
            return
        if isinstance(result, StreamStarted | StreamEnded):
            for port in node.video_outputs:
                self._put(node, port, result)
            return
        if isinstance(result, Emit):
            port, item = result.port, result.item
        else:
            port, item = node.default_out, result
        if port is None or port not in node.outputs:
            raise VidgraphError(f"emitted to unknown output port '{port}'")
        if item is EOS:
            node.ended_ports.add(port)
        elif port in node.event_ports and isinstance(item, dict):
            with node.lock:
                events = node.metrics.events
                events[str(item.get("event"))] = events.get(str(item.get("event")), 0) + 1
        elif isinstance(item, Frame):
            node.metrics.frames_out += 1
            if item.captured:
                node.metrics.latencies.append(time.monotonic() - item.captured)
        self._put(node, port, item)

    @staticmethod
    def _put(node: _NodeState, port: str, item: Any) -> None:
        for edge in node.outputs[port]:
            edge.put(item)

    def _send_eos(self, node: _NodeState) -> None:
        for port, edges in node.outputs.items():
            if port not in node.ended_ports:
                for edge in edges:
                    edge.put(EOS)

    # -- sources -----------------------------------------------------------------------------

    def _source_loop(self, node: _NodeState, source: Source) -> None:
        # per output port, the streams started there and not yet ended
        streams: dict[str, set[str]] = {port: set() for port in node.stream_outputs}
        try:
            with torch.inference_mode():
                for item in source.generate():
                    self._from_source(node, item, streams)
                    if self.aborted.is_set():  # a stop lets the source hand over what it has
                        break
        except Exception as exc:
            self._fail(node, exc, None)
        finally:
            reason = "stopped" if self.stop_requested.is_set() else "end of stream"
            for port, names in streams.items():
                for stream in sorted(names):
                    self.metrics.streams.ended(node.name, stream)
                    self._emit(node, Emit(port, StreamEnded(stream, reason)))
            self._send_eos(node)
            self._close(node, source)

    def _from_source(self, node: _NodeState, item: Any, streams: dict[str, set[str]]) -> None:
        """Emit one item a source yielded, with the stream markers it implies on its port:
        a stream's first frame (or audio packet) is preceded by ``StreamStarted``, and its
        ``StreamEnded`` goes down every port where the stream was started. Frames and
        events also tell the stream board how the stream is doing."""
        if isinstance(item, StreamEnded):
            self.metrics.streams.ended(node.name, item.stream)
            for name, open_here in streams.items():
                if item.stream in open_here:
                    open_here.discard(item.stream)
                    self._emit(node, Emit(name, item))
            return
        port, payload = (item.port, item.item) if isinstance(item, Emit) else (
            node.default_out, item)
        started = streams.get(port) if port is not None else None
        stream = getattr(payload, "stream", None)
        if isinstance(payload, Frame):
            self.metrics.streams.frame(node.name, payload.stream)
            node.metrics.handled((payload.stream,))
        elif port in node.event_ports and isinstance(payload, dict):
            self.metrics.streams.event(node.name, payload)
        if port is not None and started is not None and isinstance(stream, str) \
                and stream not in started:
            started.add(stream)
            self._emit(node, Emit(port, StreamStarted(stream)))
        self._emit(node, item)

    # -- stages and sinks --------------------------------------------------------------------

    def _worker_loop(self, node: _NodeState, replica: int) -> None:
        inst, lane = node.instances[replica], node.lanes[replica]
        try:
            # both are per thread: entered once for all of this worker's calls
            with torch.inference_mode(), lane.scope():
                self._work(node, inst, lane, node.accepts(replica))
        except Exception as exc:
            self._fail(node, exc, None)
        finally:
            self._finish_worker(node)

    def _work(self, node: _NodeState, inst: Node, lane: Lane, accepts: Accepts | None) -> None:
        """Take, handle and deliver items until the inbox closes or the node fails."""
        inbox = node.inbox
        assert inbox is not None
        settings = node.spec.settings
        timeout_s = settings.batch_timeout_ms / 1000.0
        while True:
            got = inbox.get(settings.batch_size, timeout_s, accepts)
            if got is None:
                return
            ticket, edge, items = got
            delivery: Delivery | None = None
            try:
                delivery = self._handle(node, inst, lane, edge, items)
            finally:
                # Always pass the ticket, or replicas behind this one would wait forever.
                if node.gate is None:
                    if delivery is not None:
                        delivery()
                else:
                    node.gate.run(ticket, delivery)
            if node.failed:
                return

    def _handle(self, node: _NodeState, inst: Node, lane: Lane, edge: Edge,
                items: list[Any]) -> Delivery | None:
        """Handle what was taken from one edge; returns what to emit, in order."""
        first = items[0]
        if first is EOS:
            assert node.inbox is not None
            if node.inbox.all_finished():
                node.inbox.close()
            return lambda: inst.input_ended(edge.dst_port)
        if edge.dst_port != node.default_in:  # stream markers too: see Node.receive
            if isinstance(first, VideoPacket):
                with node.lock:  # a copied picture counts as a frame in
                    node.metrics.frames_in += 1
            return lambda: self._emit(node, inst.receive(edge.dst_port, first))
        if isinstance(first, StreamStarted | StreamEnded):
            results = self._marker(node, inst, lane, first)
        else:
            results = self._frames(node, inst, lane, items)
        if results is None:
            def halt() -> None:
                node.failed = True
            return halt
        return lambda: None if node.failed else self._emit(node, results)

    def _marker(self, node: _NodeState, inst: Node, lane: Lane,
                marker: StreamStarted | StreamEnded) -> list[Any] | None:
        """Tell the node about a stream starting or ending; the marker goes on after what
        the node returns. None if the node failed."""
        try:
            if isinstance(marker, StreamStarted):
                inst.stream_started(marker.stream)
                held: Iterable[Any] = ()
            else:
                held = lane.seal(list(inst.stream_ended(marker.stream)))
        except Exception as exc:
            if node.spec.settings.on_error is OnError.FAIL or self.aborted.is_set():
                self._fail(node, NodeError(node.name, exc, stream=marker.stream), None,
                           halt=False)
                return None
            self._count_skip(node, None, exc)
            held = ()
        return [*held, marker]

    def _frames(self, node: _NodeState, inst: Node, lane: Lane,
                frames: list[Frame]) -> list[Any] | None:
        """Process and time a batch of frames; None if the node failed."""
        started = time.perf_counter()
        results = self._process(node, inst, lane, frames)
        now = time.monotonic()
        with node.lock:  # replicas share the counters
            metrics = node.metrics
            metrics.frames_in += len(frames)
            metrics.busy_s += time.perf_counter() - started
            if isinstance(inst, Sink):  # a sink's latency is capture to written
                metrics.latencies.extend(now - f.captured for f in frames if f.captured)
        metrics.handled((f.stream for f in frames),
                        [now - f.captured for f in frames if f.captured])
        return results

    def _process(self, node: _NodeState, inst: Node, lane: Lane,
                 frames: list[Frame]) -> list[Any] | None:
        """Results for ``frames``; None if the node failed (the graph is stopping)."""
        try:
            return self._call(inst, lane, frames)
        except Exception as exc:
            if node.spec.settings.on_error is OnError.FAIL or self.aborted.is_set():
                self._fail(node, exc, frames[0] if len(frames) == 1 else None, halt=False)
                return None
            if len(frames) == 1 or node.stateful:
                # A node with per-stream history must never see a frame twice: the whole
                # batch is skipped rather than re-run frame by frame.
                for frame in frames:
                    self._count_skip(node, frame, exc)
                return []
        # A stateless batch failed under on_error: skip -- find the frames that fail.
        results: list[Any] = []
        for frame in frames:
            try:
                results.extend(self._call(inst, lane, [frame]))
            except Exception as exc:
                self._count_skip(node, frame, exc)
        return results

    def _count_skip(self, node: _NodeState, frame: Frame | None, exc: BaseException) -> None:
        with node.lock:
            node.metrics.errors += 1
            if frame is not None:
                node.metrics.skipped += 1
        if frame is None:
            log.warning("%s (stream event skipped)", NodeError(node.name, exc))
        else:
            log.warning("%s (frame skipped)", NodeError(node.name, exc, index=frame.index,
                                                         pts=frame.pts, stream=frame.stream))

    @staticmethod
    def _call(inst: Node, lane: Lane, frames: list[Frame]) -> list[Any]:
        """Frames into a node, on the worker's thread (already in inference mode and in
        the node's lane)."""
        lane.admit(frames)
        if not inst.any_device:  # the one move to the node's device, at its input
            frames = [f.to(inst.device) for f in frames]
        if isinstance(inst, Sink):
            for frame in frames:
                inst.write(frame)
            return []
        assert isinstance(inst, Stage)
        return list(lane.seal(inst.run(frames)))

    def _finish_worker(self, node: _NodeState) -> None:
        """The last worker of a node flushes every instance, sends EOS on, closes them all."""
        with node.lock:
            node.live_workers -= 1
            if node.live_workers:
                return
        inbox = node.inbox
        ended = inbox is not None and inbox.all_finished() and not self.aborted.is_set()
        if ended and not node.failed:
            self._flush(node)
        self._send_eos(node)
        for inst in node.instances:
            self._close(node, inst)

    def _flush(self, node: _NodeState) -> None:
        for inst, lane in zip(node.instances, node.lanes, strict=True):
            try:
                with torch.inference_mode(), lane.scope():
                    held = lane.seal(list(inst.flush()))
                self._emit(node, held)
            except Exception as exc:
                self._fail(node, exc, None)
