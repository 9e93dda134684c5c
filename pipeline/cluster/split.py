"""A graph divided for a cluster: what each worker runs, and what the driver runs once.

Everything that touches frames runs on the workers (a stream is decoded, processed and
written on one machine). A sink fed only by events runs on the driver: one events file, one
MQTT connection for the whole cluster, fed with what the workers' :class:`Gather` nodes
kept. A node that listens on a port (the preview page) runs nowhere: several workers share
a machine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from ..core.errors import ParameterError
from ..core.graph import Connection, Graph, NodeSettings, NodeSpec
from ..core.node import PortKind, Sink, Source
from .relay import Gather, GatherParams, Relay, RelayParams

log = logging.getLogger("vidgraph")
#: the driver's relay node, and the prefix of the workers' gather nodes
RELAY = "cluster"
GATHER = "cluster_gather_"
#: the settings of a node the YAML did not write
DEFAULTS = NodeSettings.model_validate({})


@dataclass(frozen=True)
class Split:
    """A graph as a cluster runs it."""

    worker: Graph  #: what every worker runs (its shard source reads a followed file)
    driver: Graph | None  #: the events sinks, fed by the relay; None if there are none
    shard: str | None  #: the multi-stream source whose streams are shared among workers
    streams: list[dict[str, Any]]  #: that source's ``{stream, url}`` entries
    #: the relay port that takes the cluster's own events (the shard's events output)
    cluster_port: str | None


def source_class(graph: Graph, name: str) -> type[Source]:
    """The class of the source node ``name``."""
    cls = graph.nodes[name].cls
    if not issubclass(cls, Source):
        raise ParameterError(f"node '{name}' is not a source")
    return cls


def find_shard(graph: Graph) -> tuple[str, list[dict[str, Any]]]:
    """The one source whose streams can be shared among workers, and its streams."""
    found = [(name, source_class(graph, name).shardable(spec.params, name))
             for name, spec in graph.nodes.items() if issubclass(spec.cls, Source)]
    shards = [(name, entries) for name, entries in found if entries is not None]
    if len(shards) != 1:
        names = ", ".join(name for name, _ in shards) or "none"
        raise ParameterError(f"{graph.file}: --cluster without --inputs needs one source "
                             f"with several streams (sources:, streams: or --sources); "
                             f"found {names}")
    return shards[0]


def _events_only(spec: NodeSpec) -> bool:
    """A sink whose every connected input carries events."""
    if not issubclass(spec.cls, Sink) or not spec.inputs:
        return False
    kinds = {p.name: p.kind for p in spec.cls.inputs}
    return all(kinds[port] is PortKind.EVENTS for port in spec.inputs)


def without_listeners(graph: Graph) -> Graph:
    """``graph`` less the nodes that listen on a port (with a warning each)."""
    dropped = {n for n, spec in graph.nodes.items() if spec.cls.listens}
    for name in sorted(dropped):
        log.warning("node '%s' (%s) does not run under --cluster: several workers share a "
                    "machine and its port", name, graph.nodes[name].cls.name)
    if not dropped:
        return graph
    return replace(graph, nodes={n: s for n, s in graph.nodes.items() if n not in dropped},
                   connections=[c for c in graph.connections if c.dst not in dropped])


def split(graph: Graph, shard: str | None) -> Split:
    """Divide ``graph``; ``shard`` names the source whose streams are shared (live mode)."""
    graph = without_listeners(graph)
    on_driver = {n for n, spec in graph.nodes.items() if _events_only(spec)}
    _check_shared_files(graph, on_driver)
    gathered = sorted({(c.src, c.src_port) for c in graph.connections if c.dst in on_driver})
    keys = [f"{src}.{port}" for src, port in gathered]
    worker_nodes = {n: s for n, s in graph.nodes.items() if n not in on_driver}
    connections = [c for c in graph.connections if c.dst not in on_driver]
    for (src, port), key in zip(gathered, keys, strict=True):
        name = f"{GATHER}{src}_{port}"
        conn = Connection(src, port, name, "events")
        worker_nodes[name] = NodeSpec(name, Gather, GatherParams(key=key), DEFAULTS,
                                      {"events": conn})
        connections.append(conn)
    worker = replace(graph, nodes=worker_nodes, connections=connections, metrics=None)
    streams: list[dict[str, Any]] = []
    cluster_port = None
    if shard is not None:
        streams = source_class(graph, shard).shardable(graph.nodes[shard].params, shard) or []
        cluster_port = next((k for k in keys if k.startswith(f"{shard}.")), None)
    if not on_driver:
        return Split(worker, None, shard, streams, cluster_port)
    driver_nodes = {RELAY: NodeSpec(RELAY, Relay, RelayParams(ports=keys), DEFAULTS)}
    driver_connections: list[Connection] = []
    for name in sorted(on_driver):
        spec = graph.nodes[name]
        inputs = {port: Connection(RELAY, f"{c.src}.{c.src_port}", name, port)
                  for port, c in spec.inputs.items()}
        driver_nodes[name] = replace(spec, inputs=inputs)
        driver_connections.extend(inputs.values())
    driver = replace(graph, nodes=driver_nodes, connections=driver_connections)
    return Split(worker, driver, shard, streams, cluster_port)


def _check_shared_files(graph: Graph, on_driver: set[str]) -> None:
    """A worker's sink that writes one file for all its streams would be written by every
    worker at once: refuse it."""
    for name, spec in graph.nodes.items():
        if name in on_driver:
            continue
        for key in spec.cls.writes_to:
            value = getattr(spec.params, key, None)
            if isinstance(value, str) and value not in ("", "-") and "://" not in value \
                    and "{stream}" not in value:
                raise ParameterError(
                    f"node '{name}': {key} '{value}' would be written by every worker at "
                    "once under --cluster: put {stream} in it (or feed the node only events, "
                    "which the driver writes)")
