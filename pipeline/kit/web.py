"""One embedded HTTP server for what a running graph serves (the preview page and its
pictures, ``/metrics``, ``/healthz`` and ``/readyz``): Starlette on uvicorn, in a thread of
its own, with the limits a server reachable from a browser needs. Whatever asks for the
same address gets the same server (:func:`share`), its routes added beside the others.

Limits: at most ``max_connections`` connections at once (uvicorn answers 503 beyond);
idle keep-alive connections close after ``keep_alive_s``; routes that stream (MJPEG) bound
their own viewers and drop a client that stops reading (see :func:`send_within`).
Requests are served by one asyncio loop: a client that leaves costs no thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ..core.errors import MediaError

log = logging.getLogger("vidgraph")
#: uvicorn's own lifecycle lines ("Started server process") are not the graph's business
logging.getLogger("uvicorn.error").setLevel(logging.WARNING)


class WebServer:
    """An HTTP server on ``host``:``port`` (0: a free port) serving ``routes``."""

    def __init__(self, routes: Sequence[BaseRoute], host: str, port: int, *,
                 max_connections: int = 64, keep_alive_s: float = 5.0) -> None:
        self.host = host
        self.requested_port = port
        self.app = Starlette(routes=list(routes))
        self.config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False,
            limit_concurrency=max_connections, timeout_keep_alive=max(1, round(keep_alive_s)),
            timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.port = 0
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    def start(self, timeout_s: float = 10.0) -> int:
        """Listen (a taken port fails here, with a one-line error) and serve on a thread;
        returns the port."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError as exc:
            sock.close()
            raise MediaError(f"cannot listen on {self.host}:{self.requested_port}: "
                             f"{exc.strerror}") from None
        sock.listen(128)
        self._socket = sock
        self.port = int(sock.getsockname()[1])
        self._thread = threading.Thread(target=self._run, name=f"http:{self.port}",
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise MediaError(f"the HTTP server on {self.host}:{self.port} did not start")
            time.sleep(0.01)
        return self.port

    def add_routes(self, routes: Sequence[BaseRoute]) -> None:
        """Serve ``routes`` too; a path another part already serves is refused."""
        taken = {getattr(r, "path", None) for r in self.app.router.routes}
        clash = sorted(str(p) for r in routes if (p := getattr(r, "path", None)) in taken)
        if clash:
            raise MediaError(f"{self.host}:{self.port} already serves {', '.join(clash)}")
        self.app.router.routes.extend(routes)

    def remove_routes(self, routes: Sequence[BaseRoute]) -> None:
        """Stop serving ``routes``."""
        self.app.router.routes[:] = [r for r in self.app.router.routes if r not in routes]

    def url(self, path: str = "/") -> str:
        """The address of ``path`` on this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def _run(self) -> None:
        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            assert self._socket is not None
            await self.server.serve(sockets=[self._socket])

        asyncio.run(serve())

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run ``callback(*args)`` on the server's loop, from any thread."""
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop serving: open connections get ``timeout_graceful_shutdown`` to finish."""
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                self.server.force_exit = True
                self._thread.join(timeout_s)
        if self._socket is not None:
            self._socket.close()


async def send_within(send: Callable[[dict[str, Any]], Any], message: dict[str, Any],
                      timeout_s: float) -> None:
    """``send(message)``, or :class:`TimeoutError` if the client has not taken it within
    ``timeout_s`` (uvicorn's ``send`` waits while the client's socket is full)."""
    await asyncio.wait_for(send(message), timeout_s)


#: servers shared by address, with how many parts use each
_shared: dict[tuple[str, int], tuple[WebServer, int]] = {}
_shared_lock = threading.Lock()


def share(routes: Sequence[BaseRoute], host: str, port: int, *,
          max_connections: int = 64) -> WebServer:
    """A started server on ``host``:``port`` serving ``routes``: the one already there when
    another part of this process asked for that address (port 0: always a new one, on a
    free port). Give it back with :func:`release`."""
    with _shared_lock:
        found = _shared.get((host, port)) if port else None
        if found is not None:
            server, users = found
            server.add_routes(routes)
            _shared[(host, port)] = (server, users + 1)
            return server
        server = WebServer(routes, host, port, max_connections=max_connections)
        server.start()
        _shared[(host, server.port)] = (server, 1)
        return server


def release(server: WebServer, routes: Sequence[BaseRoute]) -> None:
    """Stop serving ``routes``; the server stops when no part uses it any more."""
    with _shared_lock:
        key = (server.host, server.port)
        _, users = _shared.get(key, (server, 1))
        if users > 1:
            _shared[key] = (server, users - 1)
            server.remove_routes(routes)
            return
        _shared.pop(key, None)
    server.stop()


def serving(path: str) -> WebServer | None:
    """The shared server that serves ``path``, if any (the preview page links to the
    metrics)."""
    with _shared_lock:
        for server, _ in _shared.values():
            if any(getattr(r, "path", None) == path for r in server.app.router.routes):
                return server
    return None
