"""The preview server against hostile clients: a crafted stream name is shown as text and runs
no script (in headless Chromium), unknown streams are 404 and stay unknown, viewers are
bounded, a viewer that stops reading is dropped, and no request leaves a thread behind."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.core import config
from pipeline.core.executor import Executor, RunResult, RunStatus
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry

from .live_servers import Browser, need, wait_for

CRAFTED = "<img src=x onerror=window.pwned=1>"


class Served:
    """A graph (noise pictures -> preview) running on a thread; the preview's base URL."""

    def __init__(self, stream: str, **preview: Any) -> None:
        doc = config.loads(json.dumps({"nodes": {
            "src": {"python": "tests.helpers:Noise", "stream": stream, "width": 640,
                    "height": 480, "fps": 20},
            "view": {"plugin": "preview", "input": "src", "port": 0, "quality": 95,
                     **preview}}}))
        self.executor = Executor(build_graph(doc, Registry.from_entry_points(),
                                             allow_python=True))
        self.results: list[RunResult] = []
        self.thread = threading.Thread(target=lambda: self.results.append(self.executor.run()))
        self.thread.start()
        view = self.executor.nodes["view"].instances[0]
        deadline = time.monotonic() + 20
        while not getattr(view, "pictures", None):  # open, and the first picture is in
            assert time.monotonic() < deadline, "the preview did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{view.port}/"  # type: ignore[attr-defined]

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "stats.json", timeout=5) as reply:
            return json.load(reply)

    def stop(self) -> None:
        self.executor.stop()
        self.thread.join(20)
        assert self.results and self.results[0].status is RunStatus.INTERRUPTED


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    params = getattr(request, "param", {})
    running = Served(params.pop("stream", "cam"), **params)
    yield running
    running.stop()


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def watch(url: str, receive_buffer: int | None = None) -> socket.socket:
    """A raw client that asks for an MJPEG stream and reads only its status line."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    client = socket.socket()
    if receive_buffer is not None:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    client.connect((host, int(port)))
    path = "/" + url.split("//")[1].split("/", 1)[1]
    client.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    client.settimeout(5)
    assert client.recv(12).startswith(b"HTTP/1.1 ")
    return client


@pytest.mark.parametrize("served", [{"stream": CRAFTED}], indirect=True)
def test_a_crafted_stream_name_is_shown_as_text_and_runs_no_script(
        served: Served, tmp_path: Path) -> None:
    need("Chromium", shutil.which("chromium") is not None)
    browser = Browser(served.url, tmp_path / "profile")
    try:
        caption = wait_for(lambda: browser.evaluate(
            "document.querySelector('figcaption') && "
            "document.querySelector('figcaption').textContent"), 15, "the stream's caption")
        assert caption == CRAFTED
        assert browser.evaluate("document.querySelectorAll('img').length") == 1
        assert browser.evaluate("document.querySelector('img').alt") == CRAFTED
        wait_for(lambda: browser.evaluate("document.querySelector('img').naturalWidth"), 15,
                 "the picture")
        assert browser.evaluate("typeof window.pwned") == "undefined"
        assert browser.evaluate("document.querySelector('#nodes tbody').innerText").count(
            "src") == 1
    finally:
        browser.close()


def test_unknown_streams_are_404_and_leave_no_trace_or_thread(served: Served) -> None:
    threads = threading.active_count()
    for i in range(40):
        assert status_of(served.url + f"video/nobody{i}.mjpg") == 404
    assert status_of(served.url + "video/%3Cimg%20src%3Dx%3E.mjpg") == 404
    assert served.stats()["streams"] == ["cam"]
    assert threading.active_count() == threads
    assert status_of(served.url + "nothing-here") == 404


@pytest.mark.parametrize("served", [{"max_viewers": 2}], indirect=True)
def test_viewers_are_bounded_and_counted_back(served: Served) -> None:
    video = served.url + "video/cam.mjpg"
    first, second = watch(video), watch(video)
    try:
        assert served.stats()["viewers"] == 2
        assert status_of(video) == 503
    finally:
        first.close()
        second.close()
    wait_for(lambda: served.stats()["viewers"] == 0, 10, "the viewers to be let go")
    assert status_of(served.url + "stats.json") == 200


@pytest.mark.parametrize("served", [{"client_timeout": 1.0}], indirect=True)
def test_a_viewer_that_stops_reading_is_dropped(served: Served) -> None:
    # It asks for pictures that do not compress and never reads them: the server's send
    # buffer fills within a few pictures, and one second later the viewer is dropped.
    stalled = watch(served.url + "video/cam.mjpg", receive_buffer=4096)
    try:
        assert served.stats()["viewers"] == 1
        wait_for(lambda: served.stats()["viewers"] == 0, 20, "the stalled viewer to go")
        assert status_of(served.url + "video/cam.mjpg") != 503
    finally:
        stalled.close()
