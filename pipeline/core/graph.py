"""The graph model, built from a loaded YAML document and validated before anything opens.

Every problem is collected and reported at once as ``FILE:LINE:COL: node 'x': ...``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import Document, Path_
from .edge import EdgePolicy
from .errors import GraphError, PluginNotFound, Problem, VidgraphError, suggest
from .node import Node, Params, Port, Source, Stage
from .registry import Registry, load_python_class

TOP_LEVEL_KEYS = ("name", "description", "device", "metrics", "nodes")
#: ``metrics:`` (and ``--metrics``): a port, or HOST:PORT, for /metrics and health checks
_ADDRESS = re.compile(r"^((\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):)?\d{1,5}$")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def parse_address(text: str, default_host: str) -> tuple[str, int] | None:
    """(host, port) of ``PORT`` or ``HOST:PORT`` (``[::1]:PORT`` for IPv6), or None when
    ``text`` is neither or the port is beyond 65535."""
    if not _ADDRESS.match(text):
        return None
    host, sep, port = text.rpartition(":")
    if int(port) > 65535:
        return None
    return (host.strip("[]") if sep else default_host), int(port)


class OnError(StrEnum):
    """What a node does when processing one frame raises."""

    FAIL = "fail"  #: stop the graph, finalize every sink, report node, frame and cause
    SKIP = "skip"  #: drop that frame, count it, go on


class NodeSettings(BaseModel):
    """Keys every node accepts besides its plugin's own parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str | None = Field(None, description="auto, cpu, cuda or cuda:N (default: the graph's)")
    batch_size: int = Field(1, ge=1, le=4096, description="frames per process_batch call "
                            "(stages; default: the plugin's, 1 for most)")
    batch_timeout_ms: float = Field(10.0, ge=0, description="longest wait to fill a batch")
    replicas: int = Field(1, ge=1, le=64, description="parallel instances; output order is kept")
    on_error: OnError = Field(OnError.FAIL, description="fail: stop the graph; skip: drop frame")
    queue_size: int | None = Field(None, ge=1, le=100_000, description="capacity of input edges")
    policy: EdgePolicy | None = Field(None, description="block or drop_oldest for input edges")


SETTING_KEYS = tuple(NodeSettings.model_fields)
NODE_KEYS = ("plugin", "python", "input", "inputs", *SETTING_KEYS)
DEFAULT_QUEUE_SIZE = 8


@dataclass(frozen=True)
class Connection:
    """An edge ``src.src_port -> dst.dst_port``."""

    src: str
    src_port: str
    dst: str
    dst_port: str


@dataclass
class NodeSpec:
    """One validated node: its class, parameters, settings and input connections."""

    name: str
    cls: type[Node]
    params: Params
    settings: NodeSettings
    inputs: dict[str, Connection] = field(default_factory=dict)

    @property
    def outputs(self) -> tuple[Port, ...]:
        """The node's output ports (some nodes name them from their parameters)."""
        return self.cls.output_ports(self.params)


@dataclass
class Graph:
    """A validated graph: nodes in topological order, connections between them."""

    name: str
    file: str
    device: str
    nodes: dict[str, NodeSpec]
    connections: list[Connection]
    metrics: str | None = None  #: where to serve /metrics and the health checks (HOST:PORT)


def build_graph(doc: Document, registry: Registry, *, allow_python: bool = False) -> Graph:
    """Validate ``doc`` and build the graph; raises :class:`GraphError` listing every problem."""
    return _Builder(doc, registry, allow_python).build()


class _Builder:
    def __init__(self, doc: Document, registry: Registry, allow_python: bool) -> None:
        self.doc = doc
        self.registry = registry
        self.allow_python = allow_python
        self.problems: list[Problem] = []
        self.classes: dict[str, type[Node] | None] = {}
        self.raw_inputs: dict[str, dict[str, tuple[str, Path_]]] = {}

    def fail(self, path: Path_, message: str, *, key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, key=key))

    def build(self) -> Graph:
        data = self.doc.data
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                hint = suggest(key, TOP_LEVEL_KEYS)
                self.fail((key,), f"unknown top-level key '{key}'" + _did_you_mean(hint), key=True)
        device = data.get("device", "auto")
        if not isinstance(device, str) or not _DEVICE.match(device):
            self.fail(("device",), f"device '{device}' must be auto, cpu, cuda or cuda:N")
        metrics = data.get("metrics")
        if metrics is not None and (isinstance(metrics, bool)
                                    or parse_address(str(metrics), "") is None):
            self.fail(("metrics",), f"metrics '{metrics}' must be a port or HOST:PORT")
        nodes_data = data.get("nodes")
        if not isinstance(nodes_data, dict) or not nodes_data:
            self.fail(("nodes",), "the graph needs a 'nodes:' mapping with at least one node")
            raise GraphError(self.problems)
        for name in nodes_data:
            self.classes[name] = self._node_class(name, nodes_data[name])
        specs: dict[str, NodeSpec] = {}
        for name, body in nodes_data.items():
            cls = self.classes[name]
            if cls is not None and isinstance(body, dict):
                spec = self._node(name, cls, body)
                if spec is not None:
                    specs[name] = spec
        connections = self._connect(specs)
        order = self._topological_order(specs, connections)
        self._check_unused_outputs(specs)
        self._check_destinations(specs)
        if self.problems:
            raise GraphError(self.problems)
        return Graph(
            name=str(data.get("name") or self.doc.file),
            file=self.doc.file,
            device=device,
            nodes={n: specs[n] for n in order},
            connections=connections,
            metrics=None if metrics is None else str(metrics),
        )

    def _node_class(self, name: str, body: Any) -> type[Node] | None:
        path: Path_ = ("nodes", name)
        if "." in name:
            self.fail(path, f"node '{name}': a node name cannot contain '.' (inputs are "
                      "written NODE.PORT)", key=True)
            return None
        if not isinstance(body, dict):
            self.fail(path, f"node '{name}': expected a mapping with 'plugin:'")
            return None
        if "python" in body:
            if not self.allow_python:
                self.fail((*path, "python"), f"node '{name}': 'python:' runs code from a module;"
                          " pass --allow-python to allow it", key=True)
                return None
            try:
                return load_python_class(str(body["python"]))
            except VidgraphError as exc:
                self.fail((*path, "python"), f"node '{name}': {exc}")
                return None
        plugin = body.get("plugin")
        if not isinstance(plugin, str):
            self.fail(path, f"node '{name}': missing 'plugin:' (see `vidgraph plugins`)")
            return None
        try:
            return self.registry.get(plugin)
        except PluginNotFound as exc:
            self.fail((*path, "plugin"), f"node '{name}': {exc}")
        except VidgraphError as exc:
            self.fail((*path, "plugin"), f"node '{name}': plugin '{plugin}' failed to load: {exc}")
        return None

    def _node(self, name: str, cls: type[Node], body: dict[str, Any]) -> NodeSpec | None:
        path: Path_ = ("nodes", name)
        port_names = [p.name for p in cls.inputs]
        params: dict[str, Any] = {}
        settings: dict[str, Any] = {}
        inputs: dict[str, tuple[str, Path_]] = {}
        for key, value in body.items():
            kpath = (*path, key)
            if key in ("plugin", "python"):
                continue
            if key == "input":
                if not cls.inputs:
                    self.fail(kpath, f"node '{name}': a {cls.kind()} takes no input", key=True)
                else:
                    inputs[cls.inputs[0].name] = (value, kpath)
            elif key == "inputs":
                if not isinstance(value, dict):
                    self.fail(kpath, f"node '{name}': 'inputs' must map ports to nodes")
                    continue
                for port, ref in value.items():
                    if port not in port_names:
                        self.fail((*kpath, port), f"node '{name}': no input port '{port}'"
                                  f" (ports: {', '.join(port_names) or 'none'})", key=True)
                    else:
                        inputs[port] = (ref, (*kpath, port))
            elif key in port_names:
                inputs[key] = (value, kpath)
            elif key in SETTING_KEYS:
                settings[key] = value
            else:
                params[key] = value
        self.raw_inputs[name] = inputs
        if issubclass(cls, Stage):
            settings.setdefault("batch_size", cls.batch_size)
        valid_keys = [*cls.Params.model_fields, *NODE_KEYS, *port_names]
        param_model = self._validate(name, cls.Params, params, path, valid_keys, "parameter")
        setting_model = self._validate(name, NodeSettings, settings, path, valid_keys, "setting")
        if setting_model is not None:
            self._check_settings(name, cls, setting_model, path)
        if param_model is None or setting_model is None:
            return None
        return NodeSpec(name, cls, param_model, setting_model)

    def _validate(self, name: str, model: type[BaseModel], values: dict[str, Any], path: Path_,
                  valid_keys: list[str], what: str) -> Any:
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                key = str(err["loc"][0]) if err["loc"] else ""
                kpath = (*path, key) if key else path
                if err["type"] == "extra_forbidden":
                    hint = suggest(key, valid_keys)
                    self.fail(kpath, f"node '{name}': unknown parameter '{key}'"
                              + _did_you_mean(hint), key=True)
                elif err["type"] == "missing":
                    self.fail(path, f"node '{name}': missing required {what} '{key}'", key=True)
                else:
                    shown = ".".join(str(p) for p in err["loc"])
                    value = _value_at(values, err["loc"])
                    self.fail(kpath, f"node '{name}': {what} '{shown}' = {value!r}: "
                              f"{_pydantic_message(err)}")
            return None

    def _check_settings(self, name: str, cls: type[Node], settings: NodeSettings,
                        path: Path_) -> None:
        if settings.device is not None and not _DEVICE.match(settings.device):
            self.fail((*path, "device"), f"node '{name}': device '{settings.device}' must be "
                      "auto, cpu, cuda or cuda:N")
        for key in ("batch_size", "replicas"):
            if getattr(settings, key) > 1 and not issubclass(cls, Stage):
                self.fail((*path, key), f"node '{name}': '{key}' applies to stages only, "
                          f"not to a {cls.kind()}")
        if settings.replicas > 1 and issubclass(cls, Stage) and not cls.replicable:
            self.fail((*path, "replicas"), f"node '{name}': {cls.name or cls.__name__} keeps "
                      "state shared by all streams, so replicas cannot split its work by "
                      "stream; remove 'replicas'")
        if issubclass(cls, Source) and (settings.policy or settings.queue_size):
            self.fail(path, f"node '{name}': a source has no input queue; set 'policy' and "
                      "'queue_size' on the nodes that read from it")

    def _connect(self, specs: dict[str, NodeSpec]) -> list[Connection]:
        connections: list[Connection] = []
        for name, spec in specs.items():
            inputs = self.raw_inputs.get(name, {})
            for port in spec.cls.inputs:
                if port.name not in inputs:
                    if not port.optional:
                        hint = "input" if port is spec.cls.inputs[0] else port.name
                        self.fail(("nodes", name), f"node '{name}': input '{port.name}' is not "
                                  f"connected (add '{hint}: NODE')", key=True)
                    continue
                ref, rpath = inputs[port.name]
                conn = self._resolve(name, port, ref, rpath, specs)
                if conn is not None:
                    spec.inputs[port.name] = conn
                    connections.append(conn)
            wrong = spec.cls.check_inputs(set(inputs))
            if wrong:
                self.fail(("nodes", name), f"node '{name}': {wrong}", key=True)
        return connections

    def _resolve(self, name: str, port: Port, ref: Any, rpath: Path_,
                 specs: dict[str, NodeSpec]) -> Connection | None:
        if not isinstance(ref, str) or not ref:
            self.fail(rpath, f"node '{name}': input '{port.name}' must name a node or NODE.PORT")
            return None
        src, _, src_port = ref.partition(".")
        if src not in self.classes:
            hint = suggest(src, [n for n in self.classes if n != name])
            self.fail(rpath, f"node '{name}': input '{port.name}' names unknown node '{src}'"
                      + _did_you_mean(hint))
            return None
        src_cls = self.classes[src]
        if src_cls is None or src not in specs:
            return None  # already reported
        ports = specs[src].outputs
        if not ports:
            self.fail(rpath, f"node '{name}': input '{port.name}' reads from '{src}', "
                      f"a {src_cls.kind()} with no outputs")
            return None
        outputs = {p.name: p for p in ports}
        out = outputs.get(src_port) if src_port else ports[0]
        if out is None:
            hint = suggest(src_port, outputs)
            self.fail(rpath, f"node '{name}': '{src}' has no output '{src_port}'"
                      + (_did_you_mean(f"{src}.{hint}") if hint else
                         f" (outputs: {', '.join(outputs)})"))
            return None
        if out.kind != port.kind:
            self.fail(rpath, f"node '{name}': input '{name}.{port.name}' expects {port.kind} "
                      f"but '{src}.{out.name}' produces {out.kind}")
            return None
        return Connection(src, out.name, name, port.name)

    def _topological_order(self, specs: dict[str, NodeSpec],
                           connections: list[Connection]) -> list[str]:
        deps = {n: {c.src for c in connections if c.dst == n} for n in specs}
        order: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(n: str, trail: list[str]) -> None:
            if state.get(n) == 2:
                return
            if state.get(n) == 1:
                cycle = [*trail[trail.index(n):], n]
                self.fail(("nodes", n), f"node '{n}': cycle {' -> '.join(cycle)}", key=True)
                return
            state[n] = 1
            for d in sorted(deps.get(n, ())):
                if d in specs:
                    visit(d, [*trail, n])
            state[n] = 2
            order.append(n)

        for n in specs:
            visit(n, [])
        return order

    def _check_unused_outputs(self, specs: dict[str, NodeSpec]) -> None:
        # Read from what was written, so a node with a bad parameter still counts as a reader.
        used: set[tuple[str, str]] = set()
        for inputs in self.raw_inputs.values():
            for ref, _ in inputs.values():
                src, _, out_name = str(ref).partition(".")
                cls = self.classes.get(src)
                if cls is not None and cls.outputs:
                    used.add((src, out_name or cls.outputs[0].name))
        for name, spec in specs.items():
            for port in spec.outputs:
                if not port.optional and (name, port.name) not in used:
                    self.fail(("nodes", name), f"node '{name}': output '{port.name}' is not used "
                              "(connect it to a sink, e.g. null_sink)", key=True)
            if spec.outputs and all(p.optional for p in spec.outputs) and not any(
                    src == name for src, _ in used) and issubclass(spec.cls, Source):
                names = ", ".join(p.name for p in spec.outputs)
                self.fail(("nodes", name), f"node '{name}': none of its outputs ({names}) is "
                          "used", key=True)


    def _check_destinations(self, specs: dict[str, NodeSpec]) -> None:
        """Two nodes writing to one file (or URL) would lose one output: refuse it."""
        writers: dict[str, str] = {}
        for name, spec in specs.items():
            for key in spec.cls.writes_to:
                value = getattr(spec.params, key, None)
                if not isinstance(value, str) or value in ("", "-"):
                    continue
                where = value if "://" in value else os.path.abspath(
                    os.path.expanduser(value))
                first = writers.setdefault(where, name)
                if first != name:
                    self.fail(("nodes", name, key), f"node '{name}': {key} '{value}' is "
                              f"where node '{first}' writes too; one of the outputs would be "
                              "lost")


def _did_you_mean(hint: str | None) -> str:
    return f" (did you mean '{hint}'?)" if hint else ""


def _pydantic_message(err: Any) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else msg


def _value_at(values: dict[str, Any], loc: tuple[Any, ...]) -> Any:
    """The value a validation error's location points at (``streams.1``: that item)."""
    value: Any = values
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            break
    return value
