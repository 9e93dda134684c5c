"""Typed exceptions: every failure a user can cause is one of these, and a test can catch it.

Each also derives from the builtin a caller already knows (``LookupError``, ``ValueError``,
``RuntimeError``), as PyAV's errors do, so code that does not know vidgraph still catches them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class VidgraphError(Exception):
    """Base of every error vidgraph raises on purpose; its ``str`` is the one-line message."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph file, with its position (1-based line and column)."""

    file: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {one_line(self.message)}"


#: control characters, shown escaped: a message quoting what a user wrote stays one line
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(32), *range(127, 160))} | {
    10: "\\n", 13: "\\r", 9: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped."""
    return text.translate(_CONTROLS)


class GraphError(VidgraphError, ValueError):
    """The graph file is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class PluginNotFound(VidgraphError, LookupError):
    """No plugin is registered under the name asked for."""

    def __init__(self, name: str, suggestion: str | None = None) -> None:
        self.name = name
        hint = f" (did you mean '{suggestion}'?)" if suggestion else ""
        super().__init__(f"unknown plugin '{name}'{hint}")


class PluginConflict(VidgraphError, RuntimeError):
    """Two installed distributions register the same plugin name."""


class MediaError(VidgraphError, OSError):
    """A file or stream cannot be opened, read or written (the message names it)."""


class ParameterError(VidgraphError, ValueError):
    """A parameter value that only opening the node can reject (an encoder not built in)."""


class NodeError(VidgraphError, RuntimeError):
    """A node failed while opening, running or closing.

    ``index`` and ``pts`` name the frame being processed, when there was one.
    """

    def __init__(
        self,
        node: str,
        cause: BaseException | str,
        *,
        index: int | None = None,
        pts: int | None = None,
        stream: str | None = None,
    ) -> None:
        self.node = node
        self.cause = cause
        self.index = index
        self.pts = pts
        where = f" on stream '{stream}'" if stream else ""
        if index is not None:
            where = f" on frame {index}" + (f" of stream '{stream}'" if stream else "")
            if pts is not None:
                where += f" (pts {pts})"
        if isinstance(cause, BaseException):
            self.__cause__ = cause
        reason = cause if isinstance(cause, str) else describe_exception(cause)
        super().__init__(f"node '{node}'{where}: {reason}")


def describe_exception(exc: BaseException) -> str:
    """One line for an exception: its message, prefixed by its type where that adds meaning."""
    if isinstance(exc, VidgraphError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, OSError) and exc.strerror:
        name = f" '{exc.filename}'" if exc.filename else ""
        return f"{exc.strerror}{name}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of ``choices`` to a misspelt ``word``, if any is close."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None
