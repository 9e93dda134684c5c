"""Following a file that people edit while a graph runs (a camera list): its content is
read again every so often and handed on when it changed, never half-written and never
when invalid; it is parsed only when its text changed."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from ..core.errors import ParameterError

log = logging.getLogger("vidgraph")
T = TypeVar("T")
#: a file read twice this far apart with the same text is not being written
SETTLE_S = 0.05


class Follower(Generic[T]):
    """Reads the file ``path`` every ``interval_s``; when its text changed, ``load()``
    makes a value of it and ``apply(value)`` gets the value if it changed too.

    The text, not the time stamp, tells a change (two quick edits share one); a text read
    twice :data:`SETTLE_S` apart with two results is being written (an editor that does
    not write atomically) and waits for the next poll. A file that becomes invalid
    (``load`` raises :class:`ParameterError`) is reported once and ignored until it is
    fixed: what was applied stays as it is.
    """

    def __init__(self, path: str | Path, load: Callable[[], T], apply: Callable[[T], None],
                 interval_s: float = 0.2, keeping: str = "keeping the current sources") -> None:
        self.path = Path(path)
        self.load = load
        self.apply = apply
        self.interval_s = interval_s
        self.keeping = keeping  #: what the error line says is kept meanwhile
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="follower", daemon=True)
        self._seen: str | None = None
        self._last: T | None = None
        self._bad: str | None = None

    def start(self) -> None:
        """Apply the file now, then follow it."""
        self.poll()
        self._thread.start()

    def stop(self) -> None:
        """Stop following the file."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    def poll(self) -> None:
        """Look once; apply the value if it changed and is valid."""
        text = self._read()
        if text is not None and text == self._seen:
            return
        time.sleep(SETTLE_S)
        if self._read() != text:
            return  # being written: next time
        self._seen = text
        try:
            value = self.load()
        except ParameterError as exc:
            if str(exc) != self._bad:
                log.error("%s (%s)", exc, self.keeping)
            self._bad = str(exc)
            return
        self._bad = None
        if value != self._last:
            self._last = value
            self.apply(value)

    def _read(self) -> str | None:
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()
