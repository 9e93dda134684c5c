"""YAML graph files: safe loading that remembers where every key and value was written.

Positions let validation say ``graph.yaml:12:5: node 'style': ...``. ``--set node.key=value``
overrides (value parsed as YAML) and ``${ENV}`` / ``${ENV:-default}`` substitutions are
applied here, before validation, so they are checked like everything else.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import GraphError, ParameterError, Problem, suggest

Path_ = tuple[str | int, ...]
_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map",
                                                  "seq")}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Position:
    """Where something was written: a file (or ``--set``) and a 1-based line and column."""

    file: str
    line: int
    col: int


@dataclass
class Document:
    """A loaded graph file: plain data plus the position of each key and value."""

    file: str
    data: dict[str, Any]
    values: dict[Path_, Position] = field(default_factory=dict)
    keys: dict[Path_, Position] = field(default_factory=dict)

    def where(self, path: Path_, *, key: bool = False) -> Position:
        """The position of ``path`` (its key with ``key=True``), else of its nearest parent."""
        table = self.keys if key else self.values
        for n in range(len(path), -1, -1):
            pos = table.get(path[:n]) or self.values.get(path[:n])
            if pos is not None:
                return pos
        return Position(self.file, 1, 1)

    def problem(self, path: Path_, message: str, *, key: bool = False) -> Problem:
        """A :class:`Problem` located at ``path``."""
        pos = self.where(path, key=key)
        return Problem(pos.file, pos.line, pos.col, message)


def load(path: str | Path, overrides: list[str] | None = None,
         env: dict[str, str] | None = None) -> Document:
    """Read a graph file, substitute ``${ENV}``, apply ``--set`` overrides.

    Raises :class:`GraphError` for unreadable files, YAML syntax errors, a top level that
    is not a mapping, undefined environment variables and malformed overrides.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise GraphError([Problem(name, 1, 1, f"cannot read graph: {exc.strerror}")]) from None
    return loads(text, name, overrides, env)


def loads(text: str, file: str = "<string>", overrides: list[str] | None = None,
          env: dict[str, str] | None = None) -> Document:
    """Like :func:`load`, from a string."""
    doc = Document(file, {})
    try:
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise GraphError([Problem(file, line, col, f"invalid YAML: {exc.problem}")]) from None
    if root is None:
        raise GraphError([Problem(file, 1, 1, "the graph file is empty")])
    problems: list[Problem] = []
    data = _build(root, (), doc, loader, problems, os.environ if env is None else env)
    if not isinstance(data, dict):
        problems.append(Problem(file, 1, 1, "a graph file must be a mapping with 'nodes:'"))
    else:
        doc.data = data
        for n, text_ in enumerate(overrides or [], start=1):
            _apply_override(doc, text_, n, problems)
    if problems:
        raise GraphError(problems)
    return doc


def _build(node: yaml.Node, path: Path_, doc: Document, loader: yaml.SafeLoader,
           problems: list[Problem], env: Any) -> Any:
    doc.values[path] = Position(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        pos = doc.values[path]
        problems.append(Problem(pos.file, pos.line, pos.col,
                                f"unsupported YAML tag '{node.tag}' (graphs hold plain data)"))
        return None
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            # Keys are names: YAML 1.1 would read `on:` or `yes:` as booleans.
            key = (key_node.value if isinstance(key_node, yaml.ScalarNode)
                   else loader.construct_object(key_node))
            kpos = Position(doc.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str | int):
                problems.append(Problem(doc.file, kpos.line, kpos.col, "keys must be names"))
                continue
            key = str(key)
            if key in out:
                problems.append(Problem(doc.file, kpos.line, kpos.col, f"duplicate key '{key}'"))
            doc.keys[(*path, key)] = kpos
            out[key] = _build(value_node, (*path, key), doc, loader, problems, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, loader, problems, env)
                for i, item in enumerate(node.value)]
    value = loader.construct_object(node)
    if isinstance(value, str) and "${" in value:
        value = _substitute(value, doc.where(path), problems, env)
    return value


def _substitute(value: str, pos: Position, problems: list[Problem], env: Any) -> Any:
    def missing(name: str) -> str:
        problems.append(Problem(pos.file, pos.line, pos.col,
                                f"environment variable '{name}' is not set "
                                f"(set it, or write ${{{name}:-default}})"))
        return ""

    result = _expand(value, env, missing)
    # A value that is exactly one substitution takes the type YAML gives it ("8" -> 8).
    return yaml.safe_load(result) if _ENV.fullmatch(value) and result else result


def _expand(text: str, env: Any, missing: Callable[[str], str]) -> str:
    """``${ENV}`` and ``${ENV:-default}`` replaced; ``missing(name)`` for unset ones."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return str(env[name])
        return default if default is not None else missing(name)

    return _ENV.sub(repl, text)


def expand_env(text: str, env: Any = None) -> str:
    """``text`` with ``${ENV}`` and ``${ENV:-default}`` replaced; raises ParameterError for an
    unset variable without a default."""

    def missing(name: str) -> str:
        raise ParameterError(f"environment variable '{name}' is not set")

    return _expand(text, os.environ if env is None else env, missing)


def _apply_override(doc: Document, text: str, n: int, problems: list[Problem]) -> None:
    pos = Position("--set", n, 1)
    dotted, sep, raw = text.partition("=")
    parts = [p for p in dotted.strip().split(".") if p]
    if not sep or not parts:
        problems.append(Problem(pos.file, pos.line, pos.col,
                                f"'{text}': expected NODE.KEY=VALUE (e.g. src.url=in.mp4)"))
        return
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    nodes = doc.data.get("nodes")
    if isinstance(nodes, dict) and parts[0] in nodes:
        target_path: Path_ = ("nodes", *parts)
    elif len(parts) == 1:
        target_path = (parts[0],)
    else:
        choices = list(nodes) if isinstance(nodes, dict) else []
        hint = suggest(parts[0], choices)
        hint_text = f" (did you mean '{hint}'?)" if hint else ""
        problems.append(Problem(pos.file, pos.line, pos.col,
                                f"'{text}': no node '{parts[0]}' in the graph{hint_text}"))
        return
    container: Any = doc.data
    for key in target_path[:-1]:
        nxt = container.get(key) if isinstance(container, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            container[key] = nxt
        container = nxt
    container[target_path[-1]] = value
    doc.values[target_path] = pos
    doc.keys[target_path] = pos
