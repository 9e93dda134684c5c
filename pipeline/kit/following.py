"""Following a file that people edit while a graph runs (a camera list): its content is
read again every so often and handed on when it changed, never half-written and never
when invalid."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from ..core.errors import ParameterError

log = logging.getLogger("vidgraph")
T = TypeVar("T")
#: a file read twice this far apart with the same result is not being written
SETTLE_S = 0.05


class Follower(Generic[T]):
    """Calls ``load()`` every ``interval_s`` and ``apply(value)`` whenever the value
    changes.

    A value is taken only when two loads :data:`SETTLE_S` apart agree, so a file caught
    while an editor writes it (not atomically) waits for the next poll. A file that becomes
    invalid (``load`` raises :class:`ParameterError`) is reported once and ignored until it
    is fixed: what was applied stays as it is.
    """

    def __init__(self, load: Callable[[], T], apply: Callable[[T], None],
                 interval_s: float = 0.2, keeping: str = "keeping the current sources") -> None:
        self.load = load
        self.apply = apply
        self.interval_s = interval_s
        self.keeping = keeping  #: what the error line says is kept meanwhile
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="follower", daemon=True)
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
        first: T | ParameterError
        try:
            first = self.load()
        except ParameterError as exc:
            first = exc
        time.sleep(SETTLE_S)
        try:
            value = self.load()
        except ParameterError as exc:
            if isinstance(first, ParameterError) and str(first) == str(exc) \
                    and str(exc) != self._bad:
                log.error("%s (%s)", exc, self.keeping)
                self._bad = str(exc)
            return
        if isinstance(first, ParameterError) or first != value:
            return  # being written: next time
        self._bad = None
        if value != self._last:
            self._last = value
            self.apply(value)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()
