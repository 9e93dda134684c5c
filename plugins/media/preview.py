"""``preview``: watch a running graph in a browser (live MJPEG picture and per-node figures)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import cv2
import numpy as np
from pydantic import Field

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Sink

log = logging.getLogger("vidgraph")
_BOUNDARY = "vidgraphframe"
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>vidgraph preview: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #111; color: #ddd; }}
.streams {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; }} img {{ max-width: 640px; background: #000; display: block; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
td, th {{ padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #333; }}
td:first-child, th:first-child {{ text-align: left; }}
</style></head>
<body><h1>{title}</h1>
<div class="streams" id="streams"></div>
<table id="nodes"><thead><tr><th>node</th><th>fps</th><th>frames</th><th>latency p50 ms</th>
<th>latency p95 ms</th><th>drops</th><th>queue</th></tr></thead><tbody></tbody></table>
<script>
let previous = null;
function cell(value) {{ return value === null || value === undefined ? "-" : value; }}
async function refresh() {{
  const stats = await (await fetch("stats.json", {{cache: "no-store"}})).json();
  const box = document.getElementById("streams");
  for (const name of stats.streams) {{
    if (!document.getElementById("stream-" + name)) {{
      const fig = document.createElement("figure");
      fig.innerHTML = '<img id="stream-' + name + '" alt="' + name + '"><figcaption>' + name +
        '</figcaption>';
      box.appendChild(fig);
      fig.querySelector("img").src = "video/" + encodeURIComponent(name) + ".mjpg";
    }}
  }}
  const rows = [];
  for (const [name, m] of Object.entries(stats.nodes)) {{
    const before = previous && previous.nodes[name];
    const dt = previous ? stats.elapsed_s - previous.elapsed_s : 0;
    const count = (x) => Math.max(x.frames_in, x.frames_out);
    const fps = before && dt > 0 ? ((count(m) - count(before)) / dt).toFixed(1) : "-";
    rows.push("<tr data-node='" + name + "'><td>" + name + "</td><td>" + fps + "</td><td>" +
      count(m) + "</td><td>" + cell(m.latency_ms_p50) + "</td><td>" +
      cell(m.latency_ms_p95) + "</td><td>" + m.drops + "</td><td>" + m.queue_depth +
      "</td></tr>");
  }}
  document.querySelector("#nodes tbody").innerHTML = rows.join("");
  previous = stats;
}}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


class PreviewParams(Params):
    """Parameters of ``preview``."""

    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    host: str = Field("127.0.0.1", description="address to listen on; anything but loopback "
                      "shows the picture to the network")
    fps: float = Field(10.0, gt=0, le=60, description="most pictures per second per stream")
    width: int | None = Field(640, ge=16, description="scale the picture to this width")
    quality: int = Field(80, ge=10, le=100, description="JPEG quality")


class _Latest:
    """The newest JPEG of one stream, and a condition its viewers wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.jpeg: bytes | None = None
        self.seq = 0
        self.sent_at = 0.0


class Preview(Sink):
    """Serves a page with the live picture of every stream that reaches it and each node's
    fps, frame count, latency and drops (refreshed every second).

    Open ``http://127.0.0.1:PORT/`` in a browser; ``/video/STREAM.mjpg`` is the bare MJPEG
    stream (``video_source`` and ffmpeg can read it too) and ``/stats.json`` the figures.
    Pictures are encoded only while someone watches, at most ``fps`` per stream, so an
    unwatched preview costs nothing.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 0.5}
      view: {plugin: preview, input: src, port: 0}
    ```
    """

    name = "preview"
    summary = "live picture (MJPEG) and per-node figures in a browser"
    Params = PreviewParams
    params: PreviewParams

    def open(self) -> None:
        self.streams: dict[str, _Latest] = {}
        self.lock = threading.Lock()
        self.viewers = 0
        self.closed = threading.Event()
        handler = type("Handler", (_Handler,), {"preview": self})
        try:
            self.server = ThreadingHTTPServer((self.params.host, self.params.port), handler)
        except OSError as exc:
            raise MediaError(f"cannot listen on {self.params.host}:{self.params.port}: "
                             f"{exc.strerror}") from None
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="preview-http",
                                       daemon=True)
        self.thread.start()
        log.info("node '%s': preview on http://%s:%d/", self.context.name, self.params.host,
                 self.port)

    def _latest(self, stream: str) -> _Latest:
        with self.lock:
            latest = self.streams.get(stream)
            if latest is None:
                latest = self.streams[stream] = _Latest()
            return latest

    def write(self, frame: Frame) -> None:
        latest = self._latest(frame.stream)
        now = time.monotonic()
        if latest.jpeg is not None and (
                not self.viewers or now - latest.sent_at < 1 / self.params.fps):
            return
        latest.sent_at = now
        jpeg = self._encode(frame)
        with latest.cond:
            latest.jpeg = jpeg
            latest.seq += 1
            latest.cond.notify_all()

    def _encode(self, frame: Frame) -> bytes:
        image = frame.image.cpu().numpy()
        width = self.params.width
        if width is not None and image.shape[1] > width:
            height = max(2, round(image.shape[0] * width / image.shape[1]))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        bgr = np.ascontiguousarray(image[..., ::-1])
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.params.quality])
        if not ok:
            raise MediaError("JPEG encoding failed")
        return bytes(data)

    def stats(self) -> dict[str, Any]:
        """What ``/stats.json`` serves."""
        metrics = self.context.metrics
        document = metrics.to_dict("running", None) if metrics is not None else {"nodes": {}}
        with self.lock:
            document["streams"] = sorted(self.streams)
        return document

    def close(self) -> None:
        self.closed.set()
        for latest in list(self.streams.values()):
            with latest.cond:
                latest.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    preview: Preview
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("preview: " + format, *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            title = self.preview.context.name
            self._send(_PAGE.format(title=title).encode(), "text/html; charset=utf-8")
        elif path == "/stats.json":
            self._send(json.dumps(self.preview.stats()).encode(), "application/json")
        elif path.startswith("/video/") and path.endswith(".mjpg"):
            self._mjpeg(unquote(path[len("/video/"):-len(".mjpg")]))
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _mjpeg(self, stream: str) -> None:
        preview = self.preview
        latest = preview._latest(stream)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        with preview.lock:
            preview.viewers += 1
        seen = -1
        try:
            while not preview.closed.is_set():
                with latest.cond:
                    if latest.seq == seen:
                        latest.cond.wait(1.0)
                    jpeg, seq = latest.jpeg, latest.seq
                if jpeg is None or seq == seen:
                    continue
                seen = seq
                self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the viewer went away
        finally:
            with preview.lock:
                preview.viewers -= 1
            self.close_connection = True
