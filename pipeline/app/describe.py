"""Text about plugins and graphs, read from their declarations: describe, tables, DOT, Mermaid."""

from __future__ import annotations

import inspect
import json
import re
from enum import Enum
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from ..core.graph import Graph, NodeSettings
from ..core.node import Node
from ..core.registry import Registry

_LIMITS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def param_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description with limits) for each field of ``model``."""
    rows = []
    for name, info in model.model_fields.items():
        if info.default_factory is not None:
            default = json.dumps(info.default_factory())  # type: ignore[call-arg]
        elif info.default is PydanticUndefined:
            default = "required"
        else:
            value = info.default
            default = json.dumps(value.value if isinstance(value, Enum) else value)
        limits = [f"{sym} {getattr(m, key)}" for m in info.metadata for key, sym in _LIMITS
                  if hasattr(m, key)]
        text = info.description or ""
        if limits:
            text += f" ({', '.join(limits)})"
        rows.append((name, _type_name(info.annotation), default, text))
    return rows


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return "|".join(str(m.value) for m in annotation)
    args = get_args(annotation)
    if args and get_origin(annotation) in (Union, UnionType):
        return " | ".join(_type_name(a) for a in args)
    if get_origin(annotation) is Literal:
        return "|".join(str(a) for a in args)
    if annotation is type(None):
        return "None"
    text = getattr(annotation, "__name__", None) or str(annotation)
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", text.replace("typing.", ""))


def describe(cls: type[Node]) -> str:
    """Everything a graph author needs about one plugin."""
    lines = [f"{cls.name} ({cls.kind()}): {cls.summary}", ""]
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc:
        lines += [doc, ""]
    for title, ports in (("inputs", cls.inputs), ("outputs", cls.outputs)):
        if ports:
            lines.append(f"{title}:")
            for i, p in enumerate(ports):
                tags = ["default"] if i == 0 else []
                if p.optional:
                    tags.append("optional")
                tag = f" [{', '.join(tags)}]" if tags else ""
                lines.append(f"  {p.name:<10} {p.kind}{tag}  {p.doc}".rstrip())
    lines.append("parameters:")
    rows = param_rows(cls.Params) or [("(none)", "", "", "")]
    lines += [f"  {n:<18} {t:<22} {d:<12} {x}".rstrip() for n, t, d, x in rows]
    lines.append("settings every node takes:")
    lines += [f"  {n:<18} {t:<22} {d:<12} {x}".rstrip() for n, t, d, x in param_rows(NodeSettings)]
    return "\n".join(lines)


def json_schema(cls: type[Node]) -> dict[str, Any]:
    """JSON Schema of a node's YAML body (its parameters), for editors."""
    schema = cls.Params.model_json_schema()
    schema["title"] = cls.name
    schema["description"] = cls.summary
    return schema


def plugin_table(registry: Registry, markdown: bool = False) -> str:
    """One row per plugin: name, kind, summary."""
    classes = [registry.get(n) for n in registry.names()]
    if markdown:
        rows = ["| plugin | kind | what it does |", "| --- | --- | --- |"]
        rows += [f"| `{c.name}` | {c.kind()} | {c.summary} |" for c in classes]
        return "\n".join(rows)
    width = max((len(c.name) for c in classes), default=4)
    return "\n".join(f"{c.name:<{width}}  {c.kind():<6}  {c.summary}" for c in classes)


def to_dot(graph: Graph) -> str:
    """Graphviz DOT: one box per node, one arrow per edge labelled with its ports."""
    lines = [f'digraph "{graph.name}" {{', "  rankdir=LR;", "  node [shape=box];"]
    for name, spec in graph.nodes.items():
        lines.append(f'  "{name}" [label="{name}\\n{spec.cls.name}"];')
    for c in graph.connections:
        lines.append(f'  "{c.src}" -> "{c.dst}" [label="{c.src_port} → {c.dst_port}"];')
    lines.append("}")
    return "\n".join(lines)


def to_mermaid(graph: Graph) -> str:
    """Mermaid flowchart of the graph."""
    lines = ["flowchart LR"]
    for name, spec in graph.nodes.items():
        lines.append(f'  {name}["{name}<br/>{spec.cls.name}"]')
    for c in graph.connections:
        lines.append(f"  {c.src} -- \"{c.src_port} → {c.dst_port}\" --> {c.dst}")
    return "\n".join(lines)
