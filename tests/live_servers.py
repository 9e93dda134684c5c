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
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
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


ESTABLISHED, LISTEN = "01", "0A"  # TCP states as /proc/net/tcp writes them


def tcp_states(port: int) -> set[str]:
    """The states of the sockets on 127.0.0.1:port, read from /proc/net/tcp (a probing
    connection would count as a client to ffmpeg's one-shot listener)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {fields[3] for fields in map(str.split, lines) if fields[1] == local}


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    return LISTEN in tcp_states(port)


class Camera:
    """A synthetic RTSP camera (H.264 + AAC) in a subprocess; can be killed, restarted on
    the same port, frozen (SIGSTOP) and thawed."""

    def __init__(self, *, fps: int = 30, audio: bool = True, path: str = "/cam",
                 gop: int = 15, size: tuple[int, int] = (320, 240),
                 film: Path | None = None, separate: bool = False) -> None:
        self.fps = fps
        self.audio = audio
        self.path = path
        self.gop = gop  # frames between keyframes: a new viewer's first picture waits for one
        self.size = size
        self.film = film  # an MP4 to play (at its pace) instead of the test pattern
        self.separate = separate  # a pipeline per client, for many clients at once
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
        if self.film is not None:
            args += ["--file", str(self.film)]
        if self.separate:
            args.append("--separate")
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
    """Debian's ffmpeg listening for an RTSP publisher and copying what it gets to a file,
    packet by packet (so a test can see the pictures arrive)."""

    def __init__(self, output: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.output = output
        self.url = f"rtsp://127.0.0.1:{self.port}/live"
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_flags", "listen", "-listen_timeout",
             "20", "-i", self.url, "-c", "copy", "-flush_packets", "1", "-y", str(output)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        # a publisher already retrying may connect between two looks: ffmpeg then has
        # stopped listening, and has its client
        while not tcp_states(self.port) & {LISTEN, ESTABLISHED}:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"ffmpeg did not listen: {self.proc.stderr.read()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        """Wait for ffmpeg to finish (the publisher's TEARDOWN ends it)."""
        return self.proc.wait(timeout)

    def received(self) -> int:
        """Bytes written to the output so far: none until a publisher has sent pictures."""
        return self.output.stat().st_size if self.output.exists() else 0

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


class Broker:
    """Debian's mosquitto on a loopback port: anonymous, or with one user and password;
    with TLS when given a certificate and key. Can be killed and started again on the
    same port."""

    def __init__(self, folder: Path, *, user: tuple[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence false"]
        if os.geteuid() == 0:  # else it becomes user 'mosquitto', who cannot read our files
            lines.append("user root")
        if user is None:
            lines.append("allow_anonymous true")
        else:
            passwords = folder / "passwords"
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), *user], check=True,
                           capture_output=True)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        if tls is not None:
            lines += [f"certfile {tls[0]}", f"keyfile {tls[1]}"]
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        """Start listening; returns once it does."""
        deadline = time.monotonic() + 10
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while not listening(self.port):
            if self.proc.poll() is not None:
                if time.monotonic() > deadline:  # the port may linger a moment after a kill
                    raise RuntimeError(f"mosquitto did not start: {self.proc.stderr.read()!r}")
                time.sleep(0.2)
                self.proc = subprocess.Popen(["mosquitto", "-c", str(self.config)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.02)
        return self

    def kill(self) -> None:
        """SIGKILL: clients learn it from their sockets."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def has_mosquitto() -> bool:
    """Whether Debian's mosquitto broker is installed."""
    return shutil.which("mosquitto") is not None and shutil.which("mosquitto_passwd") is not None


class Listener:
    """A subscriber to ``topic`` that keeps (topic, payload) of what it gets, subscribing
    again after a broker restart."""

    def __init__(self, broker: Broker, topic: str = "vidgraph/#", *,
                 tls_ca: Path | None = None) -> None:
        self.messages: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        wait_for(self.subscribed.is_set, 5, "the subscription")

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages.append((message.topic, message.payload.decode()))

    def on(self, topic: str) -> list[str]:
        """The payloads that came on ``topic``, in order."""
        with self.lock:
            return [payload for t, payload in self.messages if t == topic]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
