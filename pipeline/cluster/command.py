"""``vidgraph run --cluster``: the options, and the choice between live streams and files."""

from __future__ import annotations

import argparse
import glob
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core import config
from ..core.errors import ParameterError
from ..core.graph import Graph
from ..core.node import Source
from .driver import ClusterOptions, Task, run_batch, run_live, task_document
from .split import find_shard, source_class, split

#: an ``--inputs`` file with one of these suffixes lists paths, one per line
LIST_SUFFIXES = (".txt", ".list")


def add_options(run: argparse.ArgumentParser) -> None:
    """The cluster options of ``vidgraph run``."""
    group = run.add_argument_group("many machines (Ray)")
    group.add_argument("--cluster", metavar="ray|ray:local",
                       help="run on a Ray cluster (ray: the running one, RAY_ADDRESS or "
                            "--address; ray:local: start one on this machine)")
    group.add_argument("--address", help="the Ray cluster's address (HEAD:6379)")
    group.add_argument("--workers", type=_positive(int), default=2,
                       help="worker actors to start (default 2)")
    group.add_argument("--cpus-per-worker", type=_positive(float), default=1.0, metavar="N",
                       help="CPUs Ray reserves for each worker (default 1)")
    group.add_argument("--gpus-per-worker", type=_positive(float, zero=True), default=0.0,
                       metavar="N", help="GPUs for each worker, fractions allowed (default 0)")
    group.add_argument("--max-streams-per-worker", type=_positive(int), metavar="N",
                       help="streams one worker may run; the rest wait, 'unassigned'")
    group.add_argument("--inputs", metavar="GLOB|LIST.txt",
                       help="run the graph once per file (its source's url), {stem} and "
                            "{name} in its values taking the file's")


def _positive(kind: Callable[[str], float], zero: bool = False) -> Callable[[str], float]:
    """An argparse type: a number above 0 (or at least 0)."""
    def parse(text: str) -> float:
        value = kind(text)
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'positive'}")
        return value
    return parse


def run(doc: config.Document, graph: Graph, args: argparse.Namespace) -> int:
    """Run ``graph`` on the cluster ``args`` name; returns the exit status."""
    options = ClusterOptions(
        target=args.cluster, address=args.address, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        max_streams=args.max_streams_per_worker, quiet=args.quiet, stats=args.stats,
        metrics=args.metrics or graph.metrics)
    if args.inputs:
        return run_batch(tasks(doc, graph, args.inputs), options)
    shard, _ = find_shard(graph)
    parts = split(graph, shard)
    spec = graph.nodes[shard]
    followed = getattr(spec.params, "sources_file", None)

    def reload() -> list[dict[str, Any]]:
        return source_class(graph, shard).shardable(spec.params, shard) or []

    return run_live(parts, options, None if followed is None else (followed, reload))


def input_files(pattern: str) -> list[str]:
    """The files ``--inputs`` names: a list file's lines, or a glob's matches."""
    listed = Path(pattern)
    if listed.suffix.lower() in LIST_SUFFIXES and listed.is_file():
        lines = listed.read_text(encoding="utf-8").splitlines()
        files = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    else:
        files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        raise ParameterError(f"--inputs: '{pattern}' names no file")
    return files


def tasks(doc: config.Document, graph: Graph, pattern: str) -> list[Task]:
    """One task per input file; refuses two inputs that would write one output."""
    sources = [n for n, s in graph.nodes.items()
               if issubclass(s.cls, Source) and "url" in type(s.params).model_fields]
    if len(sources) != 1:
        raise ParameterError(f"{graph.file}: --inputs needs one source with a 'url' "
                             f"(found {', '.join(sources) or 'none'})")
    source = sources[0]
    writers = [(n, key) for n, s in graph.nodes.items() for key in s.cls.writes_to]
    result: list[Task] = []
    written: dict[str, str] = {}
    for file in input_files(pattern):
        data = task_document(doc.data, source, file)
        for node, key in writers:
            value = data["nodes"][node].get(key)
            if not isinstance(value, str) or value == "-":
                continue
            first = written.setdefault(str(Path(value).resolve()), file)
            if first != file:
                raise ParameterError(f"--inputs: '{first}' and '{file}' would both write "
                                     f"'{value}' (node '{node}': put {{stem}} in its {key})")
        result.append(Task(file, data))
    return result
