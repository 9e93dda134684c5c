"""Runs a validated graph: one worker thread per node instance, bounded edges between them.

Flow: sources iterate ``generate()``; stages and sinks take items from their :class:`Inbox`
in arrival order (batched when asked), and emit results to the edges of their outputs.
End of stream: a source sends EOS down every output when it returns; a node whose inputs
have all delivered EOS flushes, sends EOS on, and closes. Shutdown: ``stop()`` (first
Ctrl+C) makes sources return so everything drains; ``abort()`` (second Ctrl+C) closes every
inbox so workers exit at once; sinks are closed, and so finalized, in both cases.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Any

from .device import resolve_device
from .edge import DEFAULT_POLICY, EOS, Edge, EdgePolicy, Inbox
from .errors import NodeError, VidgraphError, describe_exception
from .frame import Frame
from .graph import DEFAULT_QUEUE_SIZE, Graph, NodeSpec, OnError
from .metrics import Metrics, NodeMetrics
from .node import Emit, Node, NodeContext, PortKind, Sink, Source, Stage

log = logging.getLogger("vidgraph")
#: capacity of the video edges after a live source (at least; batching raises it)
LIVE_QUEUE_SIZE = 2
#: capacity of the audio and event edges after a live source
LIVE_AUDIO_QUEUE_SIZE = 64


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


def _nothing() -> None:
    """The action of a ticket that emits nothing."""


class _Gate:
    """Lets replica workers emit in the order their inputs were taken."""

    def __init__(self, aborted: threading.Event) -> None:
        self.cond = threading.Condition()
        self.next = 0
        self.aborted = aborted

    def run(self, ticket: int, fn: Callable[[], None]) -> None:
        with self.cond:
            while self.next != ticket and not self.aborted.is_set():
                self.cond.wait(0.1)
        try:
            fn()
        finally:
            with self.cond:
                self.next = max(self.next, ticket + 1)
                self.cond.notify_all()


class _Runner:
    """Everything the executor keeps about one node."""

    def __init__(self, spec: NodeSpec, instances: list[Node], inbox: Inbox | None,
                 metrics: NodeMetrics, aborted: threading.Event) -> None:
        self.spec = spec
        self.name = spec.name
        self.instances = instances
        self.inbox = inbox
        self.metrics = metrics
        self.outputs: dict[str, list[Edge]] = {p.name: [] for p in spec.outputs}
        self.default_out = spec.outputs[0].name if spec.outputs else None
        self.default_in = spec.cls.inputs[0].name if spec.cls.inputs else None
        self.event_ports = {p.name for p in spec.outputs if p.kind is PortKind.EVENTS}
        self.gate = _Gate(aborted) if len(instances) > 1 else None
        self.live_workers = len(instances)
        self.lock = threading.Lock()
        self.opened: list[Node] = []
        self.ended_ports: set[str] = set()
        self.failed = False  # set on failure: replicas behind it emit nothing more


class Executor:
    """Builds nodes and edges for a :class:`Graph` and runs it to completion."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.stop_requested = threading.Event()
        self.aborted = threading.Event()
        self.metrics = Metrics(list(graph.nodes))
        self.error: NodeError | None = None
        self._error_lock = threading.Lock()
        self.runners: dict[str, _Runner] = {}
        self._threads: list[threading.Thread] = []
        self._build()

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        for name, spec in self.graph.nodes.items():
            try:
                device = resolve_device(spec.settings.device, self.graph.device)
            except VidgraphError as exc:
                raise NodeError(name, exc) from None
            context = NodeContext(name, device, spec.settings.batch_size, self.stop_requested,
                                  frozenset(spec.inputs), self.metrics)
            try:
                instances = [spec.cls(spec.params, context) for _ in range(spec.settings.replicas)]
            except Exception as exc:
                raise NodeError(name, exc) from exc
            inbox = Inbox() if spec.cls.inputs else None
            self.runners[name] = _Runner(spec, instances, inbox, self.metrics.nodes[name],
                                         self.aborted)
        for conn in self.graph.connections:
            dst = self.runners[conn.dst]
            assert dst.inbox is not None
            settings = dst.spec.settings
            capacity, policy = self._edge_defaults(conn.src, conn.src_port, dst.spec)
            edge = Edge(dst.inbox, conn.src, conn.src_port, conn.dst, conn.dst_port,
                        settings.queue_size or capacity, settings.policy or policy)
            dst.inbox.edges.append(edge)
            dst.metrics.edges.append(edge)
            self.runners[conn.src].outputs[conn.src_port].append(edge)

    def _edge_defaults(self, src: str, port: str, dst: NodeSpec) -> tuple[int, EdgePolicy]:
        """Capacity and policy of an edge the graph does not configure.

        After a live source, frames drop rather than wait: a slow consumer always gets the
        newest picture, and latency stays bounded. The capacity is small but lets a
        batching consumer fill its batches (across streams) and keep its replicas busy.
        """
        runner = self.runners[src]
        source = runner.instances[0]
        if not (isinstance(source, Source) and source.live):
            return DEFAULT_QUEUE_SIZE, DEFAULT_POLICY
        kind = next(p.kind for p in runner.spec.outputs if p.name == port)
        if kind is PortKind.VIDEO:
            size = max(LIVE_QUEUE_SIZE, 2 * dst.settings.batch_size, dst.settings.replicas)
            return size, EdgePolicy.DROP_OLDEST
        if kind is PortKind.AUDIO:  # small packets; a gap in the sound beats a stalled camera
            return LIVE_AUDIO_QUEUE_SIZE, EdgePolicy.DROP_OLDEST
        return LIVE_AUDIO_QUEUE_SIZE, DEFAULT_POLICY

    def expected_frames(self) -> int | None:
        """Frames the sources will produce in all, when every source knows (for the ETA)."""
        counts = [inst.expected_frames() for r in self.runners.values()
                  for inst in r.instances if isinstance(inst, Source)]
        if not counts or any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)

    def video_sinks(self) -> list[str]:
        """Names of sinks whose first input takes video and is connected (progress counts
        their frames)."""
        return [n for n, r in self.runners.items()
                if isinstance(r.instances[0], Sink) and r.spec.cls.inputs[0].kind == "video"
                and r.spec.cls.inputs[0].name in r.spec.inputs]

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask sources to finish; everything in flight drains and sinks finalize."""
        self.stop_requested.set()

    def abort(self) -> None:
        """Stop at once: workers leave their loops, every node (sinks too) is closed."""
        self.stop_requested.set()
        self.aborted.set()
        for runner in self.runners.values():
            if runner.inbox is not None:
                runner.inbox.close()

    def _fail(self, runner: _Runner, exc: BaseException, frame: Frame | None, *,
              halt: bool = True) -> None:
        """Record the graph's error and stop it. ``halt``: the node emits nothing more from
        now on; a replica's worker passes False and halts at its turn in the output order
        instead, so that frames before the failing one, still in other replicas, get out."""
        if isinstance(exc, NodeError):
            error = exc
        elif frame is not None:
            error = NodeError(runner.name, exc, index=frame.index, pts=frame.pts,
                              stream=frame.stream)
        else:
            error = NodeError(runner.name, exc)
        with self._error_lock:
            if self.error is None:
                self.error = error
        if halt:
            runner.failed = True
        self.stop_requested.set()
        if runner.inbox is not None:
            runner.inbox.close()

    # -- running -----------------------------------------------------------------------------

    def open(self) -> None:
        """Open every node in graph order; on failure close those opened and raise."""
        for runner in self.runners.values():
            for inst in runner.instances:
                try:
                    inst.open()
                except Exception as exc:
                    self.close_all()
                    raise NodeError(runner.name, exc) from exc
                runner.opened.append(inst)

    def close_all(self) -> None:
        """Close every opened instance that is still open (reverse graph order)."""
        for runner in reversed(list(self.runners.values())):
            for inst in runner.opened:
                self._close(runner, inst)

    def _close(self, runner: _Runner, inst: Node) -> None:
        with runner.lock:
            if inst not in runner.opened:
                return
            runner.opened.remove(inst)
        try:
            inst.close()
        except Exception as exc:
            self._fail(runner, NodeError(runner.name, f"while closing: {describe_exception(exc)}"),
                       None)

    def run(self, on_started: Callable[[], None] | None = None) -> RunResult:
        """Open, run and close the graph; returns when every worker has finished.

        Raises :class:`NodeError` if a node fails to open; failures while running are
        returned in the result. Call from the main thread to keep signal handling responsive.
        """
        self.open()
        self.metrics.started = time.monotonic()
        for runner in self.runners.values():
            for i, inst in enumerate(runner.instances):
                target = self._source_loop if isinstance(inst, Source) else self._node_loop
                suffix = f"#{i}" if len(runner.instances) > 1 else ""
                thread = threading.Thread(target=target, args=(runner, inst),
                                          name=f"node:{runner.name}{suffix}", daemon=True)
                self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        if on_started is not None:
            on_started()
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.1)
        self.metrics.finished = time.monotonic()
        self.close_all()
        if self.error is not None:
            status = RunStatus.FAILED
        elif self.aborted.is_set():
            status = RunStatus.ABORTED
        elif self.stop_requested.is_set():
            status = RunStatus.INTERRUPTED
        else:
            status = RunStatus.OK
        return RunResult(status, self.error, self.metrics)

    def _emit(self, runner: _Runner, result: Any, now: float) -> None:
        if result is None:
            return
        if isinstance(result, list | tuple):
            for item in result:
                self._emit(runner, item, now)
            return
        port: str | None
        if isinstance(result, Emit):
            port, item = result.port, result.item
        else:
            port, item = runner.default_out, result
        edges = runner.outputs.get(port) if port is not None else None
        if port is None or edges is None:
            raise VidgraphError(f"emitted to unknown output port '{port}'")
        if item is EOS:
            runner.ended_ports.add(port)
        elif port in runner.event_ports and isinstance(item, dict):
            with runner.lock:
                events = runner.metrics.events
                events[str(item.get("event"))] = events.get(str(item.get("event")), 0) + 1
        elif isinstance(item, Frame):
            runner.metrics.frames_out += 1
            if item.captured:
                runner.metrics.latencies.append(now - item.captured)
        for edge in edges:
            edge.put(item)

    def _send_eos(self, runner: _Runner) -> None:
        for port, edges in runner.outputs.items():
            if port not in runner.ended_ports:
                for edge in edges:
                    edge.put(EOS)

    def _source_loop(self, runner: _Runner, source: Node) -> None:
        assert isinstance(source, Source)
        try:
            for item in source.generate():
                self._emit(runner, item, time.monotonic())
                if self.stop_requested.is_set():
                    break
        except Exception as exc:
            self._fail(runner, exc, None)
        finally:
            self._send_eos(runner)
            self._close(runner, source)

    def _node_loop(self, runner: _Runner, inst: Node) -> None:
        inbox = runner.inbox
        assert inbox is not None
        settings = runner.spec.settings
        batch = settings.batch_size
        timeout_s = settings.batch_timeout_ms / 1000.0
        try:
            while True:
                got = inbox.get(batch, timeout_s)
                if got is None:
                    break
                ticket, edge, items = got
                action: Callable[[], None] = _nothing
                results: list[Any] | None = []
                try:
                    if items[0] is EOS:
                        if inbox.all_finished():
                            inbox.close()
                        action = partial(inst.input_ended, edge.dst_port)
                    elif edge.dst_port != runner.default_in:
                        action = partial(self._receive, runner, inst, edge.dst_port, items[0])
                    else:
                        results = self._handle(runner, inst, items)
                        action = (partial(self._emit_now, runner, results)
                                  if results is not None else partial(self._halt, runner))
                finally:
                    # Always pass the ticket, or replicas behind this one would wait forever.
                    self._ordered(runner, ticket, action)
                if results is None:
                    break
        except Exception as exc:
            self._fail(runner, exc, None)
        finally:
            self._finish_worker(runner)

    def _handle(self, runner: _Runner, inst: Node, frames: list[Frame]) -> list[Any] | None:
        """Move, process and time a batch of frames; None if the node failed."""
        started = time.perf_counter()
        results = self._process(runner, inst, frames)
        now = time.monotonic()
        with runner.lock:  # replicas share the counters
            metrics = runner.metrics
            metrics.frames_in += len(frames)
            metrics.busy_s += time.perf_counter() - started
            if isinstance(inst, Sink):  # a sink's latency is capture to written
                metrics.latencies.extend(now - f.captured for f in frames if f.captured)
        return results

    def _receive(self, runner: _Runner, inst: Node, port: str, item: Any) -> None:
        self._emit(runner, inst.receive(port, item), time.monotonic())

    @staticmethod
    def _halt(runner: _Runner) -> None:
        runner.failed = True

    def _emit_now(self, runner: _Runner, results: Any) -> None:
        if not runner.failed:
            self._emit(runner, results, time.monotonic())

    def _ordered(self, runner: _Runner, ticket: int, fn: Callable[[], None]) -> None:
        if runner.gate is None:
            fn()
        else:
            runner.gate.run(ticket, fn)

    def _process(self, runner: _Runner, inst: Node, frames: list[Frame]) -> list[Any] | None:
        """Results for ``frames``; None if the node failed (the graph is stopping)."""
        try:
            return self._call(inst, frames)
        except Exception as exc:
            if runner.spec.settings.on_error is OnError.FAIL or self.aborted.is_set():
                self._fail(runner, exc, frames[0] if len(frames) == 1 else None, halt=False)
                return None
            if len(frames) == 1:
                self._skip(runner, frames[0], exc)
                return []
        # A batch failed under on_error: skip -- find the frames that fail, keep the others.
        results: list[Any] = []
        for frame in frames:
            try:
                results.extend(self._call(inst, [frame]))
            except Exception as exc:
                self._skip(runner, frame, exc)
        return results

    def _skip(self, runner: _Runner, frame: Frame, exc: BaseException) -> None:
        runner.metrics.errors += 1
        runner.metrics.skipped += 1
        log.warning("%s (frame skipped)", NodeError(runner.name, exc, index=frame.index,
                                                     pts=frame.pts))

    @staticmethod
    def _call(inst: Node, frames: list[Frame]) -> list[Any]:
        if not inst.any_device:  # the one move to the node's device, at its input
            frames = [f.to(inst.device) for f in frames]
        if isinstance(inst, Sink):
            for frame in frames:
                inst.write(frame)
            return []
        assert isinstance(inst, Stage)
        if len(frames) == 1:
            return [inst.process(frames[0])]
        return list(inst.process_batch(frames))

    def _finish_worker(self, runner: _Runner) -> None:
        """The last worker of a node flushes every instance, sends EOS on, closes them all."""
        with runner.lock:
            runner.live_workers -= 1
            if runner.live_workers:
                return
        inbox = runner.inbox
        ended = inbox is not None and inbox.all_finished() and not self.aborted.is_set()
        if ended and not runner.failed:
            self._flush(runner)
        self._send_eos(runner)
        for inst in runner.instances:
            self._close(runner, inst)

    def _flush(self, runner: _Runner) -> None:
        for inst in runner.instances:
            try:
                self._emit(runner, list(inst.flush()), time.monotonic())
            except Exception as exc:
                self._fail(runner, exc, None)

