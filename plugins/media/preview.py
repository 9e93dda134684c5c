"""``preview``: watch a running graph in a browser (live MJPEG picture and per-node figures)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from pydantic import Field
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.node import Emit, Params, Sink
from pipeline.kit import web
from pipeline.kit.web import send_within

log = logging.getLogger("vidgraph")
_BOUNDARY = "vidgraphframe"
# Every name on the page (streams, nodes) is put in with textContent, never as markup:
# a stream's name comes from its source and may hold anything.
_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>vidgraph preview</title>
<style>
body { font-family: sans-serif; margin: 1em; background: #111; color: #ddd; }
.streams { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } img { max-width: 640px; background: #000; display: block; }
table { border-collapse: collapse; margin-top: 1em; }
td, th { padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #333; }
td:first-child, th:first-child { text-align: left; }
</style></head>
<body><h1 id="title"></h1>
<nav id="links"></nav>
<div class="streams" id="streams"></div>
<table id="nodes"><thead><tr><th>node</th><th>fps</th><th>frames</th><th>latency p50 ms</th>
<th>latency p95 ms</th><th>drops</th><th>queue</th></tr></thead><tbody></tbody></table>
<script>
let previous = null;
const shown = new Map();  // stream name -> its figure
function cell(value) { return value === null || value === undefined ? "-" : String(value); }
function text(tag, value) {
  const element = document.createElement(tag);
  element.textContent = value;
  return element;
}
async function refresh() {
  const stats = await (await fetch("stats.json", {cache: "no-store"})).json();
  document.getElementById("title").textContent = stats.title;
  const box = document.getElementById("streams");
  for (const [name, figure] of shown) {
    if (!stats.streams.includes(name)) { figure.remove(); shown.delete(name); }
  }
  for (const name of stats.streams) {
    if (shown.has(name)) continue;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = name;
    img.src = "video/" + encodeURIComponent(name) + ".mjpg";
    figure.append(img, text("figcaption", name));
    box.appendChild(figure);
    shown.set(name, figure);
  }
  const rows = [];
  for (const [name, m] of Object.entries(stats.nodes)) {
    const before = previous && previous.nodes[name];
    const dt = previous ? stats.elapsed_s - previous.elapsed_s : 0;
    const count = (x) => Math.max(x.frames_in, x.frames_out);
    const fps = before && dt > 0 ? ((count(m) - count(before)) / dt).toFixed(1) : "-";
    const row = document.createElement("tr");
    row.dataset.node = name;
    for (const value of [name, fps, count(m), cell(m.latency_ms_p50), cell(m.latency_ms_p95),
                         m.drops, m.queue_depth]) {
      row.appendChild(text("td", String(value)));
    }
    rows.push(row);
  }
  document.querySelector("#nodes tbody").replaceChildren(...rows);
  const links = [];
  for (const [label, url] of Object.entries(stats.links || {})) {
    const link = text("a", label);
    link.href = url;
    links.push(link, document.createTextNode(" "));
  }
  document.getElementById("links").replaceChildren(...links);
  previous = stats;
}
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
    max_viewers: int = Field(8, ge=1, le=256, description="most pictures watched at once; "
                             "more viewers get 503")
    client_timeout: float = Field(10.0, gt=0, description="seconds a viewer may take to take "
                                  "a picture before it is dropped")


@dataclass
class _Picture:
    """The newest JPEG of one stream, and the queues of its viewers (on the server's loop)."""

    jpeg: bytes | None = None
    sent_at: float = 0.0
    viewers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)


class Preview(Sink):
    """Serves a page with the live picture of every stream that reaches it and each node's
    fps, frame count, latency and drops (refreshed every second).

    Open ``http://127.0.0.1:PORT/`` in a browser; ``/video/STREAM.mjpg`` is the bare MJPEG
    stream (``video_source`` and ffmpeg can read it too) and ``/stats.json`` the figures.
    Only streams that reach the node can be watched (any other name is 404), at most
    ``max_viewers`` at once; a viewer that stops taking pictures is dropped after
    ``client_timeout``. Pictures are encoded only while someone watches, at most ``fps``
    per stream, so an unwatched preview costs nothing.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 0.5}
      view: {plugin: preview, input: src, port: 0}
    ```
    """

    name = "preview"
    listens = True
    summary = "live picture (MJPEG) and per-node figures in a browser"
    Params = PreviewParams
    params: PreviewParams
    stream_state = ("pictures",)

    def open(self) -> None:
        self.pictures: dict[str, _Picture] = {}
        self.lock = threading.Lock()  # pictures: the node's thread adds, the server reads
        self.viewers = 0
        self.closing = False
        self.routes = self._routes()
        self.server = web.share(self.routes, self.params.host, self.params.port,
                                max_connections=self.params.max_viewers + 16)
        self.port = self.server.port
        log.info("node '%s': preview on %s", self.context.name, self.server.url())

    def _routes(self) -> list[Route]:
        return [Route("/", self._page), Route("/index.html", self._page),
                Route("/stats.json", self._stats),
                Route("/video/{name}.mjpg", self._video)]

    # -- the node's side ---------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        with self.lock:
            picture = self.pictures.setdefault(frame.stream, _Picture())
        now = time.monotonic()
        if picture.jpeg is not None and (
                not picture.viewers or now - picture.sent_at < 1 / self.params.fps):
            return
        picture.sent_at = now
        self.server.call_soon(self._publish, picture, self._encode(frame))

    def stream_ended(self, stream: str) -> Sequence[Frame | Emit]:
        with self.lock:
            picture = self.pictures.pop(stream, None)
        if picture is not None:  # its viewers' streams end
            self.server.call_soon(self._publish, picture, None)
        return ()

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

    def close(self) -> None:
        self.closing = True
        with self.lock:
            pictures = list(self.pictures.values())
        for picture in pictures:
            self.server.call_soon(self._publish, picture, None)
        web.release(self.server, self.routes)

    # -- the server's side (its own loop) ----------------------------------------------------

    @staticmethod
    def _publish(picture: _Picture, jpeg: bytes | None) -> None:
        """Hand the newest picture (None: the end) to every viewer; one waiting is enough."""
        if jpeg is not None:
            picture.jpeg = jpeg
        for queue in picture.viewers:
            with contextlib.suppress(asyncio.QueueEmpty):
                if queue.full():
                    queue.get_nowait()
            queue.put_nowait(jpeg)

    async def _page(self, request: Request) -> Response:
        return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store"})

    async def _stats(self, request: Request) -> Response:
        metrics = self.context.metrics
        document = metrics.to_dict("running", None) if metrics is not None else {"nodes": {}}
        with self.lock:
            document["streams"] = sorted(self.pictures)
        document["title"] = self.context.name
        document["viewers"] = self.viewers
        document["links"] = {path.strip("/"): path if server is self.server else server.url(path)
                             for path in ("/metrics", "/healthz", "/readyz")
                             if (server := web.serving(path)) is not None}
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def _video(self, request: Request) -> Response:
        with self.lock:
            picture = self.pictures.get(request.path_params["name"])
        if picture is None:
            return PlainTextResponse("no such stream\n", status_code=404)
        if self.viewers >= self.params.max_viewers:
            return PlainTextResponse("too many viewers\n", status_code=503)
        return _Mjpeg(self, picture)


class _Mjpeg(Response):
    """The picture of one stream as ``multipart/x-mixed-replace``, until the stream or the
    graph ends, the client leaves, or it takes longer than ``client_timeout`` to take one."""

    def __init__(self, preview: Preview, picture: _Picture) -> None:
        super().__init__()
        self.preview = preview
        self.picture = picture

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        preview, picture = self.preview, self.picture
        timeout_s = preview.params.client_timeout
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        if picture.jpeg is not None:
            queue.put_nowait(picture.jpeg)  # what the stream shows now, at once
        picture.viewers.add(queue)
        preview.viewers += 1
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await send_within(send, {"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}".encode()),
                (b"cache-control", b"no-store")]}, timeout_s)
            while not preview.closing:
                taken = asyncio.ensure_future(queue.get())
                await asyncio.wait({taken, gone}, return_when=asyncio.FIRST_COMPLETED)
                if gone.done():
                    taken.cancel()
                    return
                jpeg = taken.result()
                if jpeg is None:
                    break
                part = (f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        f"{len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
                await send_within(send, {"type": "http.response.body", "body": part,
                                         "more_body": True}, timeout_s)
            await send_within(send, {"type": "http.response.body", "body": b""}, timeout_s)
        except (TimeoutError, OSError):
            pass  # the viewer stopped taking pictures, or went away: it is dropped
        finally:
            gone.cancel()
            picture.viewers.discard(queue)
            preview.viewers -= 1


async def _disconnected(receive: Receive) -> None:
    """Returns when the client has gone."""
    while (await receive())["type"] != "http.disconnect":
        pass
