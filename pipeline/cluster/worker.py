"""The workers of a cluster, as plain classes that the driver makes Ray actors.

A :class:`StreamWorker` runs the graph on the streams the driver gives it, for as long as
the job runs; a :class:`FileWorker` runs the graph once per input file it is handed. Both
answer the driver from other threads while their graph runs (Ray's threaded actors).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ..app.memory import keep_freed_memory
from ..core import config
from ..core.errors import GraphError, VidgraphError
from ..core.executor import Executor, RunResult, RunStatus
from ..core.graph import Graph, build_graph
from ..core.node import Source
from ..core.registry import Registry
from .relay import Gather
from .split import source_class

log = logging.getLogger("vidgraph")


def _settle(cwd: str) -> None:
    """Work where the driver works (relative paths in the graph mean the same on every
    machine that shares the folder), and log and keep memory as the command line does."""
    logging.basicConfig(level=logging.INFO, format="vidgraph: %(message)s")
    keep_freed_memory()  # as `vidgraph run` does: a Ray worker is a process of its own
    if os.path.isdir(cwd):
        os.chdir(cwd)
    else:
        log.warning("worker on %s: the driver's folder %s is not here; relative paths are "
                    "from %s", os.uname().nodename, cwd, os.getcwd())


def frames_made(executor: Executor) -> int:
    """Pictures done so far: those the busiest sink of pictures took (a recording by copy
    decodes none), else the frames the sources made."""
    sinks = [executor.nodes[n].metrics.frames_in for n in executor.video_sinks()]
    return max(sinks) if sinks else sum(
        state.metrics.frames_out for state in executor.nodes.values()
        if isinstance(state.instances[0], Source))


class StreamWorker:
    """Runs ``graph`` with its source ``shard`` reading the streams the driver assigns.

    The assignment reaches the graph as a sources file the source follows, so adding and
    removing a stream is what editing ``--sources`` does on one machine: a removed stream
    ends and its files are finalised, an added one starts, the others never notice.
    """

    def __init__(self, graph: Graph, shard: str, index: int, cwd: str) -> None:
        _settle(cwd)
        self.index = index
        self.incarnation = uuid.uuid4().hex  # a restarted actor answers with a new one
        import ray  # only ever imported on a worker, which Ray started

        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self.folder = Path(tempfile.mkdtemp(prefix=f"vidgraph-worker{index}-"))
        self.sources = self.folder / "sources.yaml"
        self.share: list[dict[str, Any]] = []
        self._write([])
        spec = graph.nodes[shard]
        nodes = dict(graph.nodes)
        cls = source_class(graph, shard)
        nodes[shard] = replace(spec, params=cls.on_share(spec.params, str(self.sources)))
        self.executor = Executor(replace(graph, nodes=nodes))
        self.gathers = [s.instances[0] for s in self.executor.nodes.values()
                        if isinstance(s.instances[0], Gather)]
        self.result: RunResult | None = None
        self.failure: str | None = None
        self.thread = threading.Thread(target=self._run, name="graph", daemon=True)
        self.thread.start()

    def _write(self, share: list[dict[str, Any]]) -> None:
        """Replace the sources file in one step (the source never reads half of it)."""
        part = self.sources.with_suffix(".part")
        part.write_text(yaml.safe_dump(share, sort_keys=False), encoding="utf-8")
        os.replace(part, self.sources)

    def _run(self) -> None:
        try:
            self.result = self.executor.run()
            if self.result.error is not None:
                self.failure = str(self.result.error)
        except VidgraphError as exc:
            self.failure = str(exc)

    def sync(self, share: list[dict[str, Any]], known: str | None) -> dict[str, Any]:
        """Run exactly these ``{stream, url, segment}`` entries (a stream whose segment
        changed starts again, in a new file); returns how the worker is doing and the
        events gathered since the last call.

        ``known`` is the incarnation the driver knows. A share meant for an earlier
        process of this actor (sent before the driver learnt that Ray restarted it) is not
        applied: its segments may be the files that process was writing.
        """
        current = known == self.incarnation or (known is None and not self.restarted)
        if current and share != self.share:
            self.share = share
            self._write(share)
        return {
            "incarnation": self.incarnation,
            "node": os.uname().nodename,
            "pid": os.getpid(),
            "frames": frames_made(self.executor),
            "restarted": self.restarted,
            "running": [e["stream"] for e in self.share],
            "events": self._gathered(),
            "failure": self.failure,
        }

    def _gathered(self) -> list[tuple[str, dict[str, Any]]]:
        """The events every gather node kept since the last call, as (``node.port``,
        record)."""
        return [record for g in self.gathers for record in g.take()]

    def stop(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Stop the graph (every output finalised) and return its figures."""
        self.executor.stop()
        self.thread.join(timeout_s)
        if self.thread.is_alive():
            self.executor.abort()
            self.thread.join(5.0)
        status = str(self.result.status) if self.result is not None else "aborted"
        return {"status": status, "failure": self.failure,
                "events": self._gathered(),
                "stats": self.executor.metrics.to_dict(status, self.failure)}


class FileWorker:
    """Runs a graph once per input file, writing each output under a temporary name that
    becomes its final name only when the run succeeded."""

    def __init__(self, index: int, cwd: str) -> None:
        _settle(cwd)
        self.index = index
        self.registry = Registry.from_entry_points()
        self.executor: Executor | None = None
        self.lock = threading.Lock()

    def ping(self) -> int:
        """Answers once the actor is up (again)."""
        return os.getpid()

    def frames(self) -> int:
        """Frames the current task's sources have produced so far."""
        with self.lock:
            return 0 if self.executor is None else frames_made(self.executor)

    def run_task(self, doc: dict[str, Any], file: str, token: str,
                 stale: list[str]) -> dict[str, Any]:
        """Run the graph ``doc`` (the task's input and paths already in it); ``stale``
        holds the tokens of earlier attempts, whose temporary files are removed first."""
        started = time.monotonic()
        try:
            graph = build_graph(config.Document(file, doc), self.registry)
        except GraphError as exc:
            return {"ok": False, "error": str(exc).splitlines()[0], "frames": 0}
        for earlier in stale:  # what a worker that died under this task left
            for path in _temporary_outputs(graph, earlier)[1]:
                Path(path).unlink(missing_ok=True)
        graph, renames = _temporary_outputs(graph, token)
        executor = Executor(graph)
        with self.lock:
            self.executor = executor
        interrupted = False
        try:
            result = executor.run()
            error = None if result.error is None else str(result.error)
            interrupted = error is None and result.status is not RunStatus.OK
        except VidgraphError as exc:
            error = str(exc)
        finally:
            with self.lock:
                self.executor = None
        for temporary, final in renames.items():
            if error is None and not interrupted and os.path.exists(temporary):
                os.replace(temporary, final)
            elif error is not None:
                Path(temporary).unlink(missing_ok=True)  # a failed output is no output
        return {"ok": error is None and not interrupted, "error": error,
                "interrupted": interrupted, "frames": frames_made(executor),
                "seconds": round(time.monotonic() - started, 3),
                "outputs": sorted(renames.values()),
                "kept": sorted(renames) if interrupted else []}

    def stop(self) -> None:
        """Stop the task in progress (its outputs are finalised, under their temporary
        names)."""
        with self.lock:
            if self.executor is not None:
                self.executor.stop()


def temporary_name(path: str, token: str) -> str:
    """Where an output is written until its task succeeds: hidden, beside the final name,
    with the same extension (the muxer is chosen by it)."""
    final = Path(path)
    return str(final.with_name(f".{final.stem}.part-{token}{final.suffix}"))


def _temporary_outputs(graph: Graph, token: str) -> tuple[Graph, dict[str, str]]:
    """``graph`` writing its files under temporary names, and {temporary: final}."""
    renames: dict[str, str] = {}
    nodes = dict(graph.nodes)
    for name, spec in graph.nodes.items():
        changes = {}
        for key in spec.cls.writes_to:
            value = getattr(spec.params, key, None)
            if isinstance(value, str) and value not in ("", "-") and "://" not in value \
                    and "{" not in value:
                changes[key] = temporary_name(value, token)
                renames[changes[key]] = value
        if changes:
            nodes[name] = replace(spec, params=spec.params.model_copy(update=changes))
    return replace(graph, nodes=nodes), renames
