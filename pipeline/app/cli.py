"""The ``vidgraph`` command: run, validate, plugins, describe, draw, train, eval.

Exit status: 0 success, 1 failure while running (or opening), 2 invalid graph or usage.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import traceback
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

from ..cluster.command import add_options as cluster_options
from ..cluster.command import run as cluster_run
from ..core import config
from ..core.errors import GraphError, MediaError, NodeError, ParameterError, VidgraphError
from ..core.executor import Executor, RunStatus
from ..core.graph import Graph, build_graph
from ..core.metrics import Progress
from ..core.registry import Registry
from ..kit import training
from ..kit.files import prepare_output
from ..kit.monitoring import Address, Monitor
from .describe import describe, json_schema, plugin_table, to_dot, to_mermaid
from .memory import keep_freed_memory

log = logging.getLogger("vidgraph")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidgraph", description="Run video graphs from YAML.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True)

    def graph_command(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("graph", help="the YAML graph file")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       metavar="NODE.KEY=VALUE", help="override a value (repeatable)")
        p.add_argument("--allow-python", action="store_true",
                       help="allow 'python: module:Class' nodes (they run code)")
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)
        return p

    run = graph_command("run", "run a graph")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress line, only errors")
    run.add_argument("--stats", metavar="FILE.json", help="write per-node figures as JSON")
    run.add_argument("--metrics", metavar="[HOST:]PORT",
                     help="serve /metrics (Prometheus), /healthz and /readyz there (host "
                          "127.0.0.1 unless given; overrides the graph's 'metrics:')")
    run.add_argument("--sources", metavar="[NODE=]FILE.yaml",
                     help="the streams of a multi-stream source, from a YAML list of "
                          "{stream, url}; edits to the file add and remove them while running "
                          f"(sets the node's '{SOURCES_PARAMETER}')")
    cluster_options(run)
    graph_command("validate", "check a graph without running it")
    draw = graph_command("draw", "print the graph as Graphviz DOT")
    draw.add_argument("--mermaid", action="store_true", help="print Mermaid instead of DOT")
    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--markdown", action="store_true", help="as a Markdown table")
    desc = sub.add_parser("describe", help="show a plugin's ports and parameters")
    desc.add_argument("plugin")
    desc.add_argument("--json", action="store_true", help="print its JSON Schema")
    for kind, help_ in (("train", "train a model"), ("eval", "score a model on data")):
        kinds = sub.add_parser(kind, help=f"{help_} (see `vidgraph {kind} -h`)")
        whats = kinds.add_subparsers(dest="what", required=True, metavar="WHAT")
        for name, module in sorted(training.commands(kind).items()):
            module.configure(whats.add_parser(name, help=(module.__doc__ or "").split("\n")[0]))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a trainer's card quotes it
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="vidgraph: %(message)s", stream=sys.stderr)
    keep_freed_memory()
    try:
        return _dispatch(args)
    except GraphError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except VidgraphError as exc:
        if args.debug:
            traceback.print_exception(exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1


def console() -> NoReturn:
    """The ``vidgraph`` command (and ``python run.py``): :func:`main`, then exit."""
    status = main()
    # The interpreter's teardown would collect every object still alive, some 280,000 once
    # torch is imported: 0.6 s of a short run on two cores. Frozen ones are left to the
    # process's end. Nothing waits on it: sinks have closed their files, and exit handlers
    # still run.
    gc.freeze()
    sys.exit(status)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in training.GROUPS:
        return int(training.commands(args.command)[args.what].main(args))
    registry = Registry.from_entry_points()
    if args.command == "plugins":
        print(plugin_table(registry, markdown=args.markdown))
        return 0
    if args.command == "describe":
        cls = registry.get(args.plugin)
        print(json.dumps(json_schema(cls), indent=2) if args.json else describe(cls))
        return 0
    if args.allow_python and "" not in sys.path:
        sys.path.insert(0, "")  # so 'python: mymodule:Node' finds modules beside the user
    doc = config.load(args.graph, args.overrides)
    if getattr(args, "sources", None):
        doc = config.load(args.graph, [*args.overrides,
                                       _sources_override(doc, registry, args.sources)])
    graph = build_graph(doc, registry, allow_python=args.allow_python)
    if args.command == "validate":
        print(f"{args.graph}: ok ({len(graph.nodes)} nodes, {len(graph.connections)} edges)")
        return 0
    if args.command == "draw":
        print(to_mermaid(graph) if args.mermaid else to_dot(graph))
        return 0
    if args.cluster:
        return cluster_run(doc, graph, args)
    if args.inputs:
        raise ParameterError("--inputs runs a graph on many files on a cluster: add "
                             "--cluster ray:local (this machine) or --cluster ray")
    return _run(graph, args)


#: the parameter a node declares to take its streams from a file (``--sources``)
SOURCES_PARAMETER = "sources_file"


def _sources_override(doc: config.Document, registry: Registry, value: str) -> str:
    """``--sources [NODE=]FILE`` as the override ``NODE.sources_file=FILE``: the node named,
    or the one node whose plugin takes a sources file."""
    found = doc.data.get("nodes")
    nodes: dict[str, Any] = found if isinstance(found, dict) else {}
    name, sep, file = value.partition("=")
    if not (sep and name in nodes):
        name, file = "", value

    def takes_file(body: Any) -> bool:
        if not isinstance(body, dict) or not isinstance(body.get("plugin"), str):
            return False
        try:
            return SOURCES_PARAMETER in registry.get(body["plugin"]).Params.model_fields
        except VidgraphError:
            return False

    if not name:
        candidates = [n for n, body in nodes.items() if takes_file(body)]
        if len(candidates) != 1:
            raise ParameterError(
                f"--sources: name the node, as --sources NODE={file} (candidates: "
                f"{', '.join(candidates) or 'none'})")
        name = candidates[0]
    elif not takes_file(nodes[name]):
        raise ParameterError(f"--sources: node '{name}' cannot take a sources file")
    return f"{name}.{SOURCES_PARAMETER}={file}"


def _check_writable(path: str, option: str) -> None:
    """Fail now, not after the run, if ``path`` cannot be written."""
    try:
        with prepare_output(path).open("a"):
            pass
    except MediaError as exc:
        raise ParameterError(f"{option}: {exc}") from None
    except OSError as exc:
        raise ParameterError(f"{option}: cannot write '{path}': {exc.strerror}") from None


def _run(graph: Graph, args: argparse.Namespace) -> int:
    if args.stats:
        _check_writable(args.stats, "--stats")
    where = "--metrics" if args.metrics else f"{graph.file}: metrics"
    address = args.metrics or graph.metrics
    listen = Address.parse(address, where) if address else None
    executor = Executor(graph)
    monitor = Monitor(executor.metrics, graph.name, listen) if listen is not None else None
    if monitor is not None:
        try:  # before the nodes open: health says "starting" while models load
            monitor.start()
        except MediaError as exc:
            raise ParameterError(f"{where}: {exc}") from None
    try:
        return _execute(executor, args)
    finally:
        if monitor is not None:
            monitor.stop()


def _execute(executor: Executor, args: argparse.Namespace) -> int:
    progress: Progress | None = None

    def started() -> None:
        nonlocal progress
        if not args.quiet:
            progress = Progress(executor.metrics, executor.video_sinks(),
                                executor.expected_frames())
            progress.start()

    signals = {signal.SIGINT: 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals[signal.SIGINT] += 1
        if signals[signal.SIGINT] == 1:
            log.info("stopping: finishing what is in flight (signal again to abort)")
            executor.stop()
        else:
            log.info("aborting: closing outputs")
            executor.abort()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = executor.run(on_started=started)
    except NodeError as exc:
        if args.debug:
            traceback.print_exception(exc)
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if progress is not None:
            progress.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    error = result.error
    if args.stats:
        result.metrics.write_json(args.stats, str(result.status), str(error) if error else None)
    if error is not None:
        if args.debug and error.__cause__ is not None:
            traceback.print_exception(error.__cause__)
        print(f"error: {error}", file=sys.stderr)
        return 1
    if result.status is not RunStatus.OK:
        log.info("%s after %.1f s", result.status, result.metrics.elapsed())
        return 130
    return 0
