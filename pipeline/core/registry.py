"""Plugin discovery: node classes registered under the entry point group ``vidgraph.plugins``.

Built-in plugins register the same way as third-party ones (see ``pyproject.toml``). A
:class:`Registry` is an ordinary object: tests build their own and add classes to it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from .errors import PluginConflict, PluginNotFound, VidgraphError, suggest
from .node import Node

GROUP = "vidgraph.plugins"


class Registry:
    """Maps plugin names to node classes, loading entry points lazily."""

    def __init__(self) -> None:
        self._entry_points: dict[str, EntryPoint] = {}
        self._classes: dict[str, type[Node]] = {}

    @classmethod
    def from_entry_points(cls) -> Registry:
        """A registry of every installed plugin; two registering one name is an error."""
        registry = cls()
        for ep in entry_points(group=GROUP):
            known = registry._entry_points.get(ep.name)
            if known is not None and known.value != ep.value:
                raise PluginConflict(
                    f"plugin '{ep.name}' is registered twice: by {_origin(known)} "
                    f"({known.value}) and by {_origin(ep)} ({ep.value})"
                )
            registry._entry_points[ep.name] = ep
        return registry

    def add(self, node_class: type[Node]) -> None:
        """Register a class directly (tests, ``python:`` nodes)."""
        if not node_class.name:
            raise VidgraphError(f"{node_class.__qualname__} has no 'name'")
        if node_class.name in self:
            raise PluginConflict(f"plugin '{node_class.name}' is already registered")
        self._classes[node_class.name] = node_class

    def names(self) -> list[str]:
        """Every registered plugin name, sorted."""
        return sorted(set(self._entry_points) | set(self._classes))

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._entry_points

    def get(self, name: str) -> type[Node]:
        """The node class registered as ``name``; raises :class:`PluginNotFound`."""
        if name in self._classes:
            return self._classes[name]
        ep = self._entry_points.get(name)
        if ep is None:
            raise PluginNotFound(name, suggest(name, self.names()))
        try:
            node_class = ep.load()
        except Exception as exc:
            raise VidgraphError(f"plugin '{name}' ({ep.value}) failed to load: {exc}") from exc
        _check_class(node_class, f"entry point '{name}' ({ep.value})")
        if node_class.name != name:
            raise PluginConflict(
                f"entry point '{name}' ({ep.value}) loads a class named '{node_class.name}'"
            )
        self._classes[name] = node_class
        return node_class


def load_python_class(spec: str) -> type[Node]:
    """The node class named by ``package.module:Class`` (for ``python:`` graph nodes)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise VidgraphError(f"'{spec}' is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise VidgraphError(f"cannot import '{module_name}': {exc}") from exc
    node_class = getattr(module, attr, None)
    if node_class is None:
        raise VidgraphError(f"module '{module_name}' has no '{attr}'")
    _check_class(node_class, spec)
    return node_class


def _check_class(obj: object, origin: str) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Node)):
        raise VidgraphError(f"{origin} is not a vidgraph Source, Stage or Sink class")


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"distribution '{dist.name}'" if dist is not None else "an unknown distribution"
