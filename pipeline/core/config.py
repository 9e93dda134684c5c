"""YAML graph files: safe loading that remembers where every key and value was written.

Positions let validation say ``graph.yaml:12:5: node 'style': ...``. ``--set node.key=value``
overrides (value parsed as YAML) and ``${ENV}`` / ``${ENV:-default}`` substitutions are
applied here, before validation, so they are checked like everything else.

A graph file may come from anyone, so reading one costs little whatever it holds: before
PyYAML builds anything, the text's size, its nesting depth and the number of values its
aliases expand to are checked on the parser's event stream (no recursion, no expansion),
and a file that is not UTF-8 is one located error. Every YAML text vidgraph reads (graph
files, ``--set`` values, ``${ENV}`` values, sources files) goes through these checks.
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
#: the most a YAML text may hold: bytes, levels of nesting, values once aliases are expanded
MAX_BYTES = 1_000_000
MAX_DEPTH = 64
MAX_VALUES = 100_000
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
        with Path(path).open("rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise GraphError([Problem(name, 1, 1, f"cannot read graph: {exc.strerror}")]) from None
    return loads(decode(raw, name), name, overrides, env)


def decode(raw: bytes, file: str) -> str:
    """``raw`` as UTF-8 text; a size over :data:`MAX_BYTES` or a byte that is not UTF-8 is
    a :class:`GraphError` located where it is."""
    if len(raw) > MAX_BYTES:
        raise GraphError([Problem(file, 1, 1, f"the file is over {MAX_BYTES:,} bytes; a "
                                  "graph file is smaller (is it the right file?)")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[:exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise GraphError([Problem(file, line, col, f"not UTF-8 text (byte "
                                  f"0x{raw[exc.start]:02x}); save the file as UTF-8")]) from None


def loads(text: str, file: str = "<string>", overrides: list[str] | None = None,
          env: dict[str, str] | None = None) -> Document:
    """Like :func:`load`, from a string."""
    doc = Document(file, {})
    root, loader = compose(text, file)
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


def compose(text: str, file: str, line: int = 1) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """The YAML node tree of ``text`` (and the loader that made it), after the limits are
    checked; raises :class:`GraphError` located at the problem (``line`` is where the text
    starts in ``file``)."""
    if len(text) > MAX_BYTES:
        raise GraphError([Problem(file, line, 1, f"the text is over {MAX_BYTES:,} bytes")])
    try:
        _check_flow_depth(text, file, line)
        _check_limits(text, file, line)
        loader = yaml.SafeLoader(text)
        try:
            return loader.get_single_node(), loader
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise GraphError([Problem(file, *_position(exc.problem_mark or exc.context_mark, line),
                                  f"invalid YAML: {exc.problem}")]) from None
    except yaml.YAMLError as exc:  # reader errors (control characters) carry no mark
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphError([Problem(file, line, 1, f"invalid YAML: {first}")]) from None


def _position(mark: Any, line: int) -> tuple[int, int]:
    return (mark.line + line, mark.column + 1) if mark is not None else (line, 1)


_FLOW = re.compile(r"[\[\]{}'\"#\n]")


def _check_flow_depth(text: str, file: str, line: int) -> None:
    """Refuse flow collections (``[[[...``) nested past :data:`MAX_DEPTH` before PyYAML
    reads them: its scanner looks ahead over the whole run of brackets for a possible key,
    which takes time that grows with the square of the depth. Quoted text and comments
    are skipped; a stray bracket inside a plain word can only make this stricter."""
    depth, quote, comment = 0, "", False
    row, row_start = 0, 0
    for match in _FLOW.finditer(text):
        char = match.group()
        if char == "\n":
            row, row_start, comment = row + 1, match.end(), False
            if quote == "'":
                continue
        if comment:
            continue
        if quote:
            if char == quote and not (quote == '"' and text[match.start() - 1] == "\\"):
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "#" and (match.start() == 0 or text[match.start() - 1] in " \t\n"):
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise GraphError([Problem(file, line + row, match.start() - row_start + 1,
                                          f"nested deeper than {MAX_DEPTH} levels")])
        elif char in "]}":
            depth = max(0, depth - 1)


def _check_limits(text: str, file: str, line: int) -> None:
    """Walk the parser's events: nesting depth, and how many values the document holds
    with every alias expanded (a "billion laughs" of nested aliases is a few hundred
    bytes and billions of values)."""
    sizes: dict[str, int] = {}  # anchor -> values it stands for
    open_: list[tuple[str | None, int]] = []  # open collections: anchor, values before it
    values = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_) >= MAX_DEPTH:
                raise GraphError([Problem(file, *_position(event.start_mark, line),
                                          f"nested deeper than {MAX_DEPTH} levels")])
            open_.append((event.anchor, values))
            values += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, start = open_.pop()
            if anchor:
                sizes[anchor] = values - start
        elif isinstance(event, yaml.ScalarEvent):
            values += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.AliasEvent):
            values += sizes.get(event.anchor, 1)
        if values > MAX_VALUES:
            raise GraphError([Problem(file, *_position(event.start_mark, line),
                                      f"aliases expand to more than {MAX_VALUES:,} values")])


def safe_data(text: str, file: str, line: int = 1) -> Any:
    """Plain data from a YAML text (``--set`` values, ``${ENV}`` values, sources files),
    under the same limits as a graph file."""
    root, loader = compose(text, file, line)
    if root is None:
        return None
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GraphError([Problem(file, line, 1, f"invalid YAML: {first}")]) from None


def _build(node: yaml.Node, path: Path_, doc: Document, loader: yaml.SafeLoader,
           problems: list[Problem], env: Any) -> Any:
    doc.values[path] = Position(doc.file, node.start_mark.line + 1, node.start_mark.column + 1)
    if node.tag not in _PLAIN_TAGS:
        pos = doc.values[path]
        problems.append(Problem(pos.file, pos.line, pos.col,
                                f"unsupported YAML tag '{node.tag}' (graphs hold plain data)"))
        return None
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # merge keys: `<<: *defaults`
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
    if not (_ENV.fullmatch(value) and result):
        return result
    try:
        return safe_data(result, pos.file, pos.line)
    except GraphError as exc:
        problems.extend(exc.problems)
        return None


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
        value = safe_data(raw, pos.file, pos.line) if raw.strip() else ""
    except GraphError as exc:
        if not any("invalid YAML" in p.message for p in exc.problems):
            problems.extend(exc.problems)  # over a limit: not a plain string either
            return
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
