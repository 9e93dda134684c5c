"""Helpers for plugin authors' tests: run one node, run a YAML graph.

```python
frames = run_node("resize", [frame], width=64)      # a node test in one line
result = run_graph(yaml_text)                         # a whole graph, in this process
```

``plugins.media.clips.make_clip`` writes real H.264 + AAC clips to test with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import yaml

from ..core import config
from ..core.executor import Executor, RunResult
from ..core.frame import Frame
from ..core.graph import build_graph
from ..core.node import Emit, Node, NodeContext, Sink, Stage
from ..core.registry import Registry


def run_graph(graph_yaml: str | dict[str, Any], *, registry: Registry | None = None,
              allow_python: bool = True, overrides: Sequence[str] = ()) -> RunResult:
    """Validate and run a graph given as YAML text or a dict; returns the result."""
    text = graph_yaml if isinstance(graph_yaml, str) else yaml.safe_dump(graph_yaml)
    doc = config.loads(text, "<test>", list(overrides))
    graph = build_graph(doc, registry or Registry.from_entry_points(), allow_python=allow_python)
    return Executor(graph).run()


@contextmanager
def opened_node(plugin: str | type[Stage] | type[Sink], registry: Registry | None = None,
                **params: Any) -> Iterator[Node]:
    """The stage or sink ``plugin`` with these parameters, on the CPU, opened for the
    block and closed after it."""
    cls = (registry or Registry.from_entry_points()).get(plugin) if isinstance(plugin, str) \
        else plugin
    context = NodeContext(name=cls.name or "node", device=torch.device("cpu"),
                          connected=frozenset(p.name for p in cls.inputs[:1]))
    node = cls(cls.Params.model_validate(params), context)
    node.open()
    try:
        yield node
    finally:
        node.close()


def run_node(plugin: str | type[Stage] | type[Sink], frames: Sequence[Frame], /,
             registry: Registry | None = None, **params: Any) -> list[Frame]:
    """Open a stage (or sink), feed it ``frames`` one at a time in this thread, as the
    runtime would (under inference mode, each stream started before its first frame and
    ended after the last), and return what it emitted.

    Emits to ports other than the first are returned too (as the items themselves).
    """
    out: list[Any] = []
    streams: list[str] = []
    with opened_node(plugin, registry, **params) as node, torch.inference_mode():
        for frame in frames:
            if frame.stream not in streams:
                streams.append(frame.stream)
                node.stream_started(frame.stream)
            if isinstance(node, Sink):
                node.write(frame)
            elif isinstance(node, Stage):
                _extend(out, node.run([frame]))
        for stream in streams:
            _extend(out, list(node.stream_ended(stream)))
        _extend(out, list(node.flush()))
    return out


def _extend(out: list[Any], result: Any) -> None:
    if result is None:
        return
    if isinstance(result, list | tuple):
        for item in result:
            _extend(out, item)
    else:
        out.append(result.item if isinstance(result, Emit) else result)
