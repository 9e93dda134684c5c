"""The driver of a cluster job: it starts the workers on Ray, gives them streams or files,
watches them, moves the work of those that die, and gathers their events and figures.

Live streams: every worker runs the graph on its share of the streams. The driver sends
each worker its share with every heartbeat; a worker that dies (its process killed, its
machine gone) or stops answering for ``failover_s`` has its streams moved to the others,
each in a new epoch (and so a new output segment), at most ``max_streams`` per worker;
streams that fit nowhere are reported ``unassigned`` and placed when room appears.

Files: every input is one task, run by whichever worker is free; a task whose worker dies
runs again elsewhere. Outputs are written under temporary names and renamed on success.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import queue
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

from ..core.errors import ParameterError, VidgraphError
from ..core.executor import Executor
from ..core.graph import Graph
from ..core.metrics import StatusLine
from ..kit.following import Follower
from ..kit.monitoring import Address, Monitor
from .assignment import Assignment
from .relay import Relay
from .split import RELAY, Split
from .worker import FileWorker, StreamWorker

log = logging.getLogger("vidgraph")
#: seconds between heartbeats
BEAT_S = 0.5
#: seconds a worker has to answer for the first time (its graph's models load meanwhile)
START_S = 120.0
#: how many times a file is tried when its workers die under it
ATTEMPTS = 3
#: seconds the workers have to finalise their outputs after Ctrl+C
STOP_S = 30.0
#: seconds between two readings of a followed sources file
RELOAD_S = 0.5


@dataclass(frozen=True)
class ClusterOptions:
    """How to reach Ray and what each worker gets."""

    target: str = "ray"  #: ``ray`` (a running cluster) or ``ray:local`` (start one here)
    address: str | None = None  #: the cluster's address (else ``RAY_ADDRESS``, else auto)
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    max_streams: int | None = None  #: streams one worker may run (None: no limit)
    failover_s: float = 5.0  #: silence after which a worker's streams move
    quiet: bool = False
    stats: str | None = None  #: where to write the gathered figures (JSON)
    metrics: str | None = None  #: where the driver serves /metrics (HOST:PORT)


def connect(options: ClusterOptions) -> ModuleType:
    """Ray, connected to the cluster the options name (or to a new local one)."""
    if options.target not in ("ray", "ray:local"):
        raise ParameterError(f"--cluster '{options.target}': use ray or ray:local")
    try:
        import ray
    except ImportError:
        raise ParameterError("--cluster needs Ray: pip install 'vidgraph[ray]'") from None
    settings: dict[str, Any] = {"configure_logging": False, "include_dashboard": False,
                                "log_to_driver": True}
    if options.target == "ray:local":
        cpus = max(os.cpu_count() or 1, math.ceil(options.workers * options.cpus_per_worker))
        settings["num_cpus"] = cpus
        if options.gpus_per_worker:
            settings["num_gpus"] = math.ceil(options.workers * options.gpus_per_worker)
        address = "local"
    else:
        address = options.address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=address, **settings)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ParameterError(f"--cluster {options.target}: cannot reach a Ray cluster at "
                             f"'{address}' ({str(exc).splitlines()[0]}); start one with "
                             "`ray start --head`, or use --cluster ray:local") from None
    return ray


def _actor_options(options: ClusterOptions) -> dict[str, Any]:
    # max_restarts: Ray starts a dead worker's process again where it fits; the driver
    # then gives it work again. Threads: the driver asks while the graph runs.
    return {"num_cpus": options.cpus_per_worker, "num_gpus": options.gpus_per_worker,
            "max_restarts": -1, "max_concurrency": 4, "scheduling_strategy": "SPREAD"}


@contextmanager
def status_line(describe: Callable[[], str], quiet: bool) -> Iterator[None]:
    """The job's one progress line while the block runs (none when ``quiet``); its final
    state is printed at the end. ``describe`` runs on the line's own thread."""
    if quiet:
        yield
        return
    line = StatusLine(describe)
    line.start()
    try:
        yield
    finally:
        line.stop()


@contextmanager
def interruptible(stop: threading.Event) -> Iterator[None]:
    """Ctrl+C (or SIGTERM) sets ``stop``; a second one aborts at once."""
    def handler(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("stopping the cluster job: the workers finalise their outputs")
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class EventSinks:
    """The driver's part of the graph: the events sinks, fed by the relay node, and the
    ``/metrics`` server when one is asked for."""

    def __init__(self, graph: Graph | None, metrics: str | None) -> None:
        self.executor = Executor(graph) if graph is not None else None
        self.relay: Relay | None = None
        self.monitor: Monitor | None = None
        self.thread: threading.Thread | None = None
        self.error: str | None = None
        if self.executor is None:
            return
        relay = self.executor.nodes[RELAY].instances[0]
        assert isinstance(relay, Relay)
        self.relay = relay
        if metrics:
            assert graph is not None
            self.monitor = Monitor(self.executor.metrics, graph.name,
                                   Address.parse(metrics, "metrics"))

    def start(self) -> None:
        """Open the sinks (a bad path or broker fails now) and start passing events."""
        if self.monitor is not None:
            self.monitor.start()
        if self.executor is not None:
            try:
                self.executor.open()
            except VidgraphError:
                if self.monitor is not None:
                    self.monitor.stop()
                raise
            self.thread = threading.Thread(target=self._run, name="cluster-events",
                                           daemon=True)
            self.thread.start()

    def _run(self) -> None:
        assert self.executor is not None
        try:
            result = self.executor.run()
            if result.error is not None:
                self.error = str(result.error)
        except VidgraphError as exc:
            self.error = str(exc)

    def put(self, key: str | None, record: dict[str, Any]) -> None:
        """Hand ``record`` to the sinks reading output ``key`` (``node.port``)."""
        if self.relay is not None and key is not None and key in self.relay.params.ports:
            self.relay.feed.put((key, record))

    def stop(self) -> dict[str, Any] | None:
        """Pass what is left, close the sinks; returns their figures."""
        if self.relay is not None:
            self.relay.done.set()
        if self.thread is not None:
            self.thread.join(STOP_S)
        if self.monitor is not None:
            self.monitor.stop()
        if self.executor is None:
            return None
        return self.executor.metrics.to_dict("finished", self.error)


# -- live streams --------------------------------------------------------------------------


@dataclass
class _Member:
    """The driver's view of one stream worker."""

    actor: Any
    started: float = field(default_factory=time.monotonic)
    answered: float | None = None  #: monotonic time of its last answer
    incarnation: str | None = None
    pending: Any = None  #: the heartbeat in flight
    frames: int = 0
    node: str = ""


def run_live(split: Split, options: ClusterOptions,
             follow: tuple[str, Callable[[], list[dict[str, Any]]]] | None) -> int:
    """Run ``split`` on the cluster until Ctrl+C; ``follow``: a sources file, and what
    reads the streams from it again when it changes. Returns the exit status."""
    assert split.shard is not None
    ray = connect(options)
    changes: queue.Queue[list[dict[str, Any]]] = queue.Queue()
    follower = None if follow is None else Follower(*follow, changes.put, RELOAD_S,
                                                    "keeping the current streams")
    try:
        sinks = EventSinks(split.driver, options.metrics)
        sinks.start()
        actor = ray.remote(**_actor_options(options))(StreamWorker)
        members = {i: _Member(actor.remote(split.worker, split.shard, i, os.getcwd()))
                   for i in range(options.workers)}
        live = _Live(ray, split, options, sinks, members, changes)
        if follower is not None:
            follower.start()
        return live.loop()
    finally:
        if follower is not None:
            follower.stop()
        ray.shutdown()


class _Live:
    """The driver's loop over heartbeats for live streams."""

    def __init__(self, ray: ModuleType, split: Split, options: ClusterOptions,
                 sinks: EventSinks, members: dict[int, _Member],
                 changes: queue.Queue[list[dict[str, Any]]]) -> None:
        self.ray = ray
        self.split = split
        self.options = options
        self.sinks = sinks
        self.assignment = Assignment(options.max_streams, alive=set(members))
        self.members = members
        self.changes = changes
        self.started = time.monotonic()
        self.failure: str | None = None
        self._events(self.assignment.set_streams(split.streams))

    def _line(self) -> str:
        # on the status line's thread: copies first (one step each), then read them
        placements = list(self.assignment.streams.values())
        frames = sum(m.frames for m in list(self.members.values()))
        elapsed = max(time.monotonic() - self.started, 1e-9)
        unassigned = sum(1 for p in placements if p.worker is None)
        text = (f"cluster: {len(self.assignment.alive)}/{len(self.members)} workers  "
                f"{len(placements)} streams")
        if unassigned:
            text += f" ({unassigned} unassigned)"
        return text + f"  {frames} frames  {frames / elapsed:.1f} fps  {elapsed:.0f} s"

    def _events(self, events: list[dict[str, Any]]) -> None:
        """Log the cluster's own events and send them down the shard's events output."""
        for record in events:
            record = {"time": round(time.time(), 3), **record}
            where = f" to worker {record['worker']}" if record.get("worker") is not None else ""
            why = f" ({record['reason']})" if record.get("reason") else ""
            log.info("cluster: stream '%s' %s%s%s", record["stream"], record["event"], where, why)
            self.sinks.put(self.split.cluster_port, record)

    def loop(self) -> int:
        stop = threading.Event()
        with status_line(self._line, self.options.quiet):
            with interruptible(stop):
                while not stop.is_set() and self.failure is None:
                    self._apply_changes()
                    self._beat()
                    stop.wait(BEAT_S)
            self._finish(interrupted=stop.is_set())
        if self.failure:  # after the progress line's last word: the error comes last
            print(f"error: {self.failure}", file=sys.stderr)
            return 1
        return 130 if stop.is_set() else 0

    def _apply_changes(self) -> None:
        """Streams added to and removed from the followed sources file are added to and
        removed from the workers."""
        while True:
            try:
                streams = self.changes.get_nowait()
            except queue.Empty:
                return
            self._events(self.assignment.set_streams(streams))

    def _beat(self) -> None:
        """Send each worker its share, read the answers that came, and move the streams
        of workers that died or went silent."""
        for index, member in self.members.items():
            if member.pending is None:
                member.pending = member.actor.sync.remote(self.assignment.share(index),
                                                          member.incarnation)
        pending = {m.pending: i for i, m in self.members.items()}
        ready, _ = self.ray.wait(list(pending), num_returns=len(pending), timeout=BEAT_S)
        now = time.monotonic()
        for ref in ready:
            index = pending[ref]
            member = self.members[index]
            member.pending = None
            try:
                reply = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                self._lose(index, f"worker {index} died: {type(exc).__name__}")
                continue
            self._answered(index, member, reply, now)
        for index, member in self.members.items():
            if index not in self.assignment.alive:
                continue
            silent = now - (member.answered or member.started)
            if silent > (self.options.failover_s if member.answered else START_S):
                self._lose(index, f"worker {index} silent for {silent:.0f} s")

    def _answered(self, index: int, member: _Member, reply: dict[str, Any],
                  now: float) -> None:
        if reply["failure"]:
            self.failure = f"worker {index} on {reply['node']}: {reply['failure']}"
            return
        # a new process of this actor: what it may have written belongs to earlier epochs
        restarted = reply["incarnation"] != member.incarnation and (
            member.incarnation is not None or reply["restarted"])
        member.answered, member.incarnation = now, reply["incarnation"]
        member.frames, member.node = reply["frames"], reply["node"]
        if index not in self.assignment.alive:
            log.info("cluster: worker %d is back (on %s)", index, reply["node"])
            self._events(self.assignment.join(index))
        elif restarted:
            self._events(self.assignment.restart(index))
        self._relay(index, reply["events"])

    def _relay(self, index: int, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Hand what worker ``index`` gathered to the driver's sinks, naming the worker."""
        for key, record in events:
            self.sinks.put(key, {**record, "worker": index})

    def _lose(self, index: int, why: str) -> None:
        if index in self.assignment.alive:
            log.warning("cluster: %s; moving its streams", why)
            self._events(self.assignment.lose(index, why))
            self.members[index].frames = 0

    def _finish(self, interrupted: bool) -> None:
        """Stop every worker (their outputs finalised), then the driver's sinks; write the
        stats."""
        stops = {m.actor.stop.remote(): i for i, m in self.members.items()
                 if i in self.assignment.alive}
        ready, _ = self.ray.wait(list(stops), num_returns=len(stops), timeout=STOP_S + 5)
        workers: dict[str, Any] = {}
        for ref in ready:
            index = stops[ref]
            try:
                reply = self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                continue
            self._relay(index, reply["events"])
            workers[f"worker{index}"] = reply["stats"]
        driver = self.sinks.stop()
        status = "failed" if self.failure else "interrupted" if interrupted else "ok"
        _write_stats(self.options.stats, {
            "status": status, "error": self.failure,
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "streams": {n: {"worker": p.worker, "epoch": p.epoch}
                        for n, p in sorted(self.assignment.streams.items())},
            "unassigned": self.assignment.unassigned(), "workers": workers, "driver": driver})


def _write_stats(path: str | None, document: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(document, indent=2) + "\n")


# -- batches of files ----------------------------------------------------------------------


@dataclass
class Task:
    """One input file."""

    file: str
    doc: dict[str, Any]
    tokens: list[str] = field(default_factory=list)  #: one per attempt (temporary names)
    result: dict[str, Any] | None = None


def task_document(doc: dict[str, Any], source: str, file: str) -> dict[str, Any]:
    """The graph ``doc`` reading ``file`` with its source ``source``; ``{stem}`` and
    ``{name}`` in its values take the file's."""
    path = Path(file)

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{stem}", path.stem).replace("{name}", path.name)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    data: dict[str, Any] = fill(copy.deepcopy(doc))
    data["nodes"][source]["url"] = file
    data.pop("metrics", None)  # workers share machines: the driver alone could serve it
    return data


def run_batch(tasks: list[Task], options: ClusterOptions) -> int:
    """Run every task on the cluster; returns 0 if all succeeded, 1 if some failed, 130
    if interrupted."""
    ray = connect(options)
    try:
        actor = ray.remote(**_actor_options(options))(FileWorker)
        workers = [actor.remote(i, os.getcwd()) for i in range(options.workers)]
        return _Batch(ray, tasks, workers, options).loop()
    finally:
        ray.shutdown()


class _Batch:
    """The driver's loop over a queue of files."""

    def __init__(self, ray: ModuleType, tasks: list[Task], workers: list[Any],
                 options: ClusterOptions) -> None:
        self.ray = ray
        self.tasks = tasks
        self.queue = deque(tasks)
        self.workers = workers
        self.options = options
        self.idle: set[int] = set()
        self.pings: dict[Any, int] = {w.ping.remote(): i for i, w in enumerate(workers)}
        self.running: dict[Any, tuple[int, Task]] = {}
        self.started = time.monotonic()
        self.without_workers: float | None = None

    def _line(self) -> str:
        done = [t for t in self.tasks if t.result is not None]
        failed = sum(1 for t in done if not t.result or not t.result["ok"])
        frames = sum(t.result["frames"] for t in done if t.result)
        elapsed = max(time.monotonic() - self.started, 1e-9)
        up = len(self.idle) + len(self.running)
        text = f"cluster: {len(done)}/{len(self.tasks)} files"
        if failed:
            text += f" ({failed} failed)"
        return (text + f"  {up}/{len(self.workers)} workers  {frames} frames  "
                f"{frames / elapsed:.1f} fps  {elapsed:.0f} s")

    def loop(self) -> int:
        stop = threading.Event()
        stopping = False
        with status_line(self._line, self.options.quiet), interruptible(stop):
            while self.queue or self.running:
                if stop.is_set() and not stopping:
                    stopping = True
                    self.queue.clear()
                    for index, _task in self.running.values():
                        self.workers[index].stop.remote()
                while self.queue and self.idle:
                    self._start(self.idle.pop(), self.queue.popleft())
                waiting = [*self.running, *self.pings]
                ready, _ = self.ray.wait(waiting, num_returns=1, timeout=BEAT_S)
                for ref in ready:
                    self._done(ref)
                self._check_workers()
        return self._finish(stopping)

    def _start(self, index: int, task: Task) -> None:
        stale = list(task.tokens)
        task.tokens.append(uuid.uuid4().hex[:8])
        ref = self.workers[index].run_task.remote(task.doc, task.file, task.tokens[-1], stale)
        self.running[ref] = (index, task)

    def _done(self, ref: Any) -> None:
        if ref in self.pings:
            index = self.pings.pop(ref)
            try:
                self.ray.get(ref)
            except self.ray.exceptions.RayActorError:
                self.pings[self.workers[index].ping.remote()] = index
                return
            self.idle.add(index)
            return
        index, task = self.running.pop(ref)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayActorError as exc:
            log.warning("cluster: worker %d died running %s (%s)", index, task.file,
                        type(exc).__name__)
            self.pings[self.workers[index].ping.remote()] = index  # back when Ray restarts it
            if len(task.tokens) < ATTEMPTS:
                self.queue.appendleft(task)
            else:
                task.result = {"ok": False, "frames": 0, "error": f"its worker died "
                               f"{ATTEMPTS} times"}
                print(f"error: {task.file}: {task.result['error']}", file=sys.stderr)
            return
        task.result = result
        self.idle.add(index)
        if result["error"]:
            print(f"error: {task.file}: {result['error']}", file=sys.stderr)

    def _check_workers(self) -> None:
        """Give up when no worker has been up for :data:`START_S`."""
        if self.idle or self.running:
            self.without_workers = None
            return
        now = time.monotonic()
        self.without_workers = self.without_workers or now
        if now - self.without_workers > START_S:
            for task in self.queue:
                task.result = {"ok": False, "frames": 0, "error": "no worker is left"}
            self.queue.clear()
            self.pings.clear()

    def _finish(self, interrupted: bool) -> int:
        failed = [t for t in self.tasks if t.result is not None and not t.result["ok"]
                  and not t.result.get("interrupted")]
        done = sum(1 for t in self.tasks if t.result is not None and t.result["ok"])
        _write_stats(self.options.stats, {
            "status": "interrupted" if interrupted else "failed" if failed else "ok",
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "files": [{"input": t.file, "attempts": len(t.tokens), **(t.result or {})}
                      for t in self.tasks]})
        text = f"{done} of {len(self.tasks)} files done"
        if failed:
            text += f", {len(failed)} failed ({', '.join(t.file for t in failed)})"
        log.info("cluster: %s", text)
        if interrupted:
            return 130
        return 1 if failed else 0
