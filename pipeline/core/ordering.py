"""Output order for replicated nodes: N instances work in parallel, results leave in the
order their inputs were taken. Used only when a node has ``replicas > 1``."""

from __future__ import annotations

import threading
from collections.abc import Callable


class TicketGate:
    """Runs each worker's delivery in ticket order (tickets number the inbox's takes).

    A worker with ticket *n* waits until every delivery before *n* has run, runs its own,
    and lets *n + 1* go. Every ticket must pass the gate, with a delivery or with nothing,
    or the workers behind it would wait forever; ``aborted`` releases everyone at once.
    """

    def __init__(self, aborted: threading.Event) -> None:
        self._cond = threading.Condition()
        self._next = 0
        self._aborted = aborted

    def run(self, ticket: int, deliver: Callable[[], None] | None) -> None:
        """Wait for ``ticket``'s turn, then run ``deliver`` (if any)."""
        with self._cond:
            while self._next != ticket and not self._aborted.is_set():
                self._cond.wait(0.1)
        try:
            if deliver is not None:
                deliver()
        finally:
            with self._cond:
                self._next = max(self._next, ticket + 1)
                self._cond.notify_all()
