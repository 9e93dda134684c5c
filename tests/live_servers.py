"""Real servers on 127.0.0.1 for the live tests: a GStreamer RTSP camera, an ffmpeg RTSP
receiver, and a headless Chromium driven over the DevTools protocol."""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Debian's interpreter: it can import gi (GStreamer); the project's virtualenv cannot
SYSTEM_PYTHON = "/usr/bin/python3"
CAMERA_SCRIPT = ROOT / "tests" / "servers" / "rtsp_camera.py"


def need(what: str, ok: bool) -> None:
    """Skip when a Debian package is missing locally; on CI (which installs them) fail."""
    if ok:
        return
    message = f"needs {what} (Debian packages: see .ci/run)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def has_gstreamer() -> bool:
    """Whether Debian's python3 can run the RTSP camera."""
    if not Path(SYSTEM_PYTHON).exists():
        return False
    check = ("import gi; gi.require_version('GstRtspServer', '1.0'); "
             "from gi.repository import GstRtspServer")
    return subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True).returncode == 0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port, read from /proc/net/tcp (a probing
    connection would count as a client to ffmpeg's one-shot listener)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local and fields[3] == "0A":
            return True
    return False


class Camera:
    """A synthetic RTSP camera (H.264 + AAC) in a subprocess; can be killed, restarted on
    the same port, frozen (SIGSTOP) and thawed."""

    def __init__(self, *, fps: int = 30, audio: bool = True, path: str = "/cam",
                 gop: int = 15, size: tuple[int, int] = (320, 240)) -> None:
        self.fps = fps
        self.audio = audio
        self.path = path
        self.gop = gop  # frames between keyframes: a new viewer's first picture waits for one
        self.size = size
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The camera's RTSP URL."""
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self) -> Camera:
        """Start serving (on the previous port after a kill); returns once it listens."""
        args = [SYSTEM_PYTHON, str(CAMERA_SCRIPT), "--port", str(self.port), "--path", self.path,
                "--fps", str(self.fps), "--gop", str(self.gop), "--width", str(self.size[0]),
                "--height", str(self.size[1])]
        if not self.audio:
            args.append("--no-audio")
        deadline = time.monotonic() + 10
        while True:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True)
            assert self.proc.stdout is not None
            ready, _, _ = select.select([self.proc.stdout], [], [], 10)
            line = self.proc.stdout.readline() if ready else ""
            if line.startswith("PORT "):
                self.port = int(line.split()[1])
                return self
            self.proc.kill()
            self.proc.wait()
            if time.monotonic() > deadline:  # the port may linger a moment after a kill
                raise RuntimeError(f"RTSP camera did not start: {self.proc.stderr.read()}")
            time.sleep(0.2)

    def kill(self) -> None:
        """Stop the server at once (SIGKILL: no goodbye to its clients)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()

    def freeze(self) -> None:
        """SIGSTOP: the connection stays open but no byte arrives."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server the polite way (SIGTERM), or kill it if it does not go."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


class Receiver:
    """Debian's ffmpeg listening for an RTSP publisher and copying what it gets to a file."""

    def __init__(self, output: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.output = output
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_flags", "listen", "-listen_timeout",
             "20", "-i", self.url, "-c", "copy", "-y", str(output)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ffmpeg did not listen: {self.proc.stderr.read()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """Wait for ffmpeg to finish (the publisher's TEARDOWN ends it)."""
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """Stop it, whatever it is doing."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Browser:
    """Headless Chromium with one page, evaluated through the DevTools protocol."""

    def __init__(self, url: str, profile: Path) -> None:
        import websocket  # websocket-client, a dev dependency

        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        assert exe is not None
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        ws_url = None
        while ws_url is None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                pages = [t for t in json.load(reply) if t["type"] == "page"]
            if pages:
                ws_url = pages[0]["webSocketDebuggerUrl"]
            elif time.monotonic() > deadline:
                raise RuntimeError("chromium has no page")
            else:
                time.sleep(0.1)
        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate", "params": {
            "expression": expression, "returnByValue": True, "awaitPromise": True}}))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                result = reply["result"]
                if "exceptionDetails" in result:
                    raise RuntimeError(str(result["exceptionDetails"]))
                return result["result"].get("value")

    def close(self) -> None:
        """Quit the browser."""
        self.ws.close()
        self.proc.kill()
        self.proc.wait()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``check`` until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
