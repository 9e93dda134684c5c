"""Camera lists: the ``{stream, url}`` entries of a multi-stream source, and the file
``video_source`` follows (``sources_file``, or ``vidgraph run --sources FILE``) so cameras
can be added and removed while it runs.

The file is a YAML list::

    - {stream: door, url: "rtsp://10.0.0.5/stream1"}
    - {stream: yard, url: "rtsp://${CAM_USER}:${CAM_PASS}@10.0.0.6/live"}
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from pipeline.core.config import decode, expand_env, safe_data
from pipeline.core.errors import GraphError, ParameterError
from pipeline.kit.following import Follower

log = logging.getLogger("vidgraph")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def check_stream_name(name: str) -> str:
    """``name`` if it can name a stream: it becomes part of file names (``{stream}`` in a
    sink's path), so letters, digits, ``_``, ``-`` and ``.`` only, and not ``.`` or
    ``..``; raises ValueError otherwise."""
    if not _NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(f"stream name {name!r} must be letters, digits, '_', '-' or '.' "
                         "(not '.' or '..': it becomes part of file names)")
    return name


#: a stream name, checked when the graph is validated
StreamName = Annotated[str, AfterValidator(check_stream_name)]


class SourceEntry(BaseModel):
    """One stream of a multi-stream source."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: StreamName = Field(description="stream name (frames' stream, {stream} in sink "
                               "paths)")
    url: str = Field(min_length=1, description="what to read: file, rtsp://, http(s)://, ...")
    segment: int = Field(1, ge=1, description="the number of the stream's output segment: "
                         "from 2 on, a sink's {stream} file is named <stream>-s<segment> "
                         "(a camera moved to another worker by `--cluster` goes on in a new "
                         "file instead of overwriting its old one)")


def parse_entries(data: Any, where: str) -> list[SourceEntry]:
    """Validate a list of ``{stream, url}`` mappings; names must be unique."""
    if not isinstance(data, list):
        raise ParameterError(f"{where}: expected a YAML list of {{stream, url}} entries")
    entries: list[SourceEntry] = []
    for i, item in enumerate(data):
        try:
            entries.append(SourceEntry.model_validate(item))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "entry"
            message = str(err["msg"]).removeprefix("Value error, ")
            raise ParameterError(f"{where}: entry {i + 1}: {field}: {message}") from None
    names = [e.stream for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ParameterError(f"{where}: stream names must be unique ({', '.join(dupes)})")
    return entries


def load_sources(path: str | Path) -> list[SourceEntry]:
    """Read a sources file (``${ENV}`` expanded); raises ParameterError naming the file."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read sources file ({exc.strerror})") from None
    try:  # the limits every YAML text vidgraph reads has
        data = safe_data(expand_env(decode(raw, str(path))), str(path))
    except GraphError as exc:
        raise ParameterError(str(exc.problems[0])) from None
    return parse_entries([] if data is None else data, str(path))


class SourcesWatcher(Follower[list[SourceEntry]]):
    """Follows a sources file: ``apply(entries)`` runs whenever its valid content changes
    (see :class:`~pipeline.kit.following.Follower`)."""

    def __init__(self, path: str | Path, apply: Callable[[list[SourceEntry]], None],
                 interval_s: float = 0.2) -> None:
        super().__init__(path, lambda: load_sources(path), apply, interval_s)
