"""``video_source``: decode video files, cameras and network streams with FFmpeg (PyAV)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.core.frame import Frame
from pipeline.core.node import END, Emit, Params, Port, PortKind, Source
from pipeline.core.packets import Codec, VideoPacket
from pipeline.core.streams import StreamEnded

from .live import is_live_url
from .sources_file import SourceEntry, SourcesWatcher, StreamName, load_sources
from .stream_reader import ReadOptions, StreamReader, expected_frames, open_container

log = logging.getLogger("vidgraph")
#: how often the node runs the watchdog and notices removed streams
_TICK_S = 0.2
#: what readers hand over, and the output port each goes to
_PORTS = {"frame": "video", "audio": "audio", "packet": "packets", "event": "events"}


class VideoSourceParams(Params):
    """Parameters of ``video_source``."""

    url: str | None = Field(None, description="file, rtsp(s)://, http(s):// (MJPEG, HLS), "
                            "/dev/videoN; may hold {stream} (see streams)")
    streams: list[StreamName] | None = Field(None, min_length=1, description="names put into "
                                             "{stream} in url: one stream each")
    sources: list[SourceEntry] | None = Field(None, description="several streams: a list of "
                                              "{stream, url}")
    sources_file: str | None = Field(None, description="a YAML list of {stream, url}, "
                                     "followed while running: edits add and remove streams "
                                     "(replaces url/streams/sources; --sources sets it)")
    live: bool | Literal["auto"] = Field("auto", description="reconnect and never end; auto: "
                                         "true for cameras and network URLs")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTSP transport")
    open_timeout: float = Field(10.0, gt=0, description="seconds to wait for a connection")
    read_timeout: float = Field(5.0, gt=0, description="seconds a read may stall before "
                                "reconnecting (live) or failing")
    reconnect_delay: float = Field(0.5, gt=0, description="first wait before reconnecting (s)")
    reconnect_max_delay: float = Field(10.0, gt=0, description="the wait doubles up to this")
    max_retries: int | None = Field(None, ge=0, description="reconnect attempts before giving "
                                    "up (default: forever)")
    low_latency: bool = Field(True, description="minimal probing and buffering (live URLs)")
    format: str | None = Field(None, description="force the input format, e.g. v4l2, mjpeg")
    options: dict[str, str] = Field(default_factory=dict, description="extra FFmpeg input "
                                    "options, e.g. {video_size: 1280x720}")
    loop: bool = Field(False, description="start again at the end (pts keep increasing)")
    start: float = Field(0.0, ge=0, description="seconds to skip at the start (seeks)")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")
    strict: bool = Field(False, description="a damaged or truncated file fails the run "
                         "(default: decode what can be, warn and count what was lost)")
    max_pixels: int = Field(8192 * 8192, ge=1, description="refuse video whose decoder "
                            "announces pictures with more pixels than this")
    hwaccel: str | None = Field(None, pattern=r"^cuda(:\d+)?$", description="cuda or cuda:N: "
                                "decode with NVDEC, the pictures staying in GPU memory; "
                                "software decoding (with a warning) where it cannot")

    @model_validator(mode="after")
    def _one_input(self) -> VideoSourceParams:
        if self.sources_file is not None:
            return self
        if (self.url is None) == (self.sources is None):
            raise ValueError("give either 'url' or 'sources' (or 'sources_file')")
        if self.streams is not None and (self.url is None or "{stream}" not in self.url):
            raise ValueError("'streams' needs a 'url' containing {stream}")
        if self.streams is None and self.url is not None and "{stream}" in self.url:
            raise ValueError("'url' contains {stream}: list the names in 'streams'")
        if self.streams is not None and len(set(self.streams)) != len(self.streams):
            raise ValueError("'streams' names must be unique")
        return self


class VideoSource(Source):
    """Decodes the first video stream of each input into frames.

    One node reads one stream (``url``), or many: ``sources`` lists ``{stream, url}``, or
    ``url`` holds ``{stream}`` and ``streams`` lists the names, or ``sources_file`` names a
    YAML list of ``{stream, url}`` that the node follows while it runs (editing it adds and
    removes streams; a removed stream ends, and its ``{stream}`` outputs are finalised).
    Each stream is read on its own thread, so a camera that drops never stalls the others,
    and frames carry the stream name (a stage with ``batch_size`` batches across streams; a
    sink path with ``{stream}`` writes one file per stream).

    Live inputs (cameras, network URLs; ``live: auto``) reconnect on end of stream, error or
    a stalled read, waiting ``reconnect_delay`` doubling to ``reconnect_max_delay``; every
    connect, disconnect and reconnect goes to the ``events`` port and the log (URLs without
    their passwords). Live frames get a monotonic per-stream timeline (time base 1/90000)
    and their capture time, and the edges after a live source default to ``drop_oldest``,
    so a slow stage sees the newest frames. Compressed audio goes, undecoded, to ``audio``
    (connect it to ``video_sink``'s ``audio`` to copy the sound). Frames keep the decoder's
    own picture, so a graph that never reads pixels encodes without converting to RGB.

    ``packets`` hands over the pictures' compressed packets as they came, for a
    ``video_sink`` to record by copying them (no decoding, no encoding: a recording costs
    a remux and loses nothing); each connection's copy starts at a keyframe. Pictures are
    decoded only if something reads ``video``.

    A damaged or truncated file is decoded as far as it goes, with one warning naming the
    file and what was lost (counted as ``frames_lost`` and ``damaged_packets`` in
    ``--stats``); ``strict: true`` fails the run instead.

    ```yaml
    nodes:
      src: {plugin: video_source, url: input.mp4, max_frames: 30}
      out: {plugin: null_sink, input: src}
    ```
    """

    name = "video_source"
    summary = "decode files, cameras, RTSP/HTTP streams (FFmpeg); reconnects live inputs"
    outputs = (
        Port("video", PortKind.VIDEO, optional=True, doc="decoded frames"),
        Port("audio", PortKind.AUDIO, optional=True, doc="compressed audio packets"),
        Port("packets", PortKind.PACKETS, optional=True,
             doc="the pictures' compressed packets, as they came (to record by copying)"),
        Port("events", PortKind.EVENTS, optional=True,
             doc="connected/disconnected/reconnected/gave_up records"),
    )
    Params = VideoSourceParams
    params: VideoSourceParams

    def __init__(self, params: VideoSourceParams, context: Any) -> None:
        super().__init__(params, context)
        self.entries = self._entries(params)
        self.readers: dict[str, StreamReader] = {}
        self.started: dict[str, SourceEntry] = {}  # the entry each reader was started from
        self.queue: queue.Queue[tuple[str, StreamReader, Any]] = queue.Queue()
        self.changes: queue.Queue[list[SourceEntry]] = queue.Queue()
        self.files: dict[str, Any] = {}
        self.watcher: SourcesWatcher | None = None
        self.expected: int | None = None
        self.packet_codecs: dict[str, Codec] = {}  # the codec of each stream's last packet

    def _entries(self, p: VideoSourceParams) -> list[SourceEntry]:
        return _entries(p, self.context.name)

    @classmethod
    def shardable(cls, params: Params, name: str) -> list[dict[str, Any]] | None:
        assert isinstance(params, VideoSourceParams)
        if params.sources_file is None and params.sources is None and params.streams is None:
            return None  # one input: nothing to split
        return [e.model_dump() for e in _entries(params, name)]

    @classmethod
    def on_share(cls, params: Params, sources_file: str) -> VideoSourceParams:
        assert isinstance(params, VideoSourceParams)
        return params.model_copy(update={"sources_file": sources_file, "url": None,
                                         "streams": None, "sources": None})

    @property
    def following(self) -> bool:
        """Whether the streams come from a followed file: the node never ends on its own."""
        return self.params.sources_file is not None

    @property
    def live(self) -> bool:
        """Whether this source reads live inputs (so its edges drop rather than block)."""
        if isinstance(self.params.live, bool):
            return self.params.live
        return self.following or any(is_live_url(e.url) for e in self.entries)

    def _options(self, url: str) -> ReadOptions:
        p = self.params
        live = p.live if isinstance(p.live, bool) else is_live_url(url)
        return ReadOptions(
            live=live, transport=p.transport, open_timeout=p.open_timeout,
            read_timeout=p.read_timeout, format=p.format, options=dict(p.options),
            low_latency=p.low_latency, loop=p.loop, start=p.start, max_frames=p.max_frames,
            backoff_initial=p.reconnect_delay, backoff_max=p.reconnect_max_delay,
            max_retries=p.max_retries, strict=p.strict, max_pixels=p.max_pixels,
            decode=self.context.reads("video"), packets=self.context.reads("packets"),
            hwaccel=p.hwaccel, node=self.context.name)

    def open(self) -> None:
        # Files are opened (and checked) now, so a bad path stops the graph before it starts;
        # live inputs connect on their threads and retry until they answer.
        counts: list[int | None] = []
        for entry in self.entries:
            options = self._options(entry.url)
            if not options.live:
                container = open_container(entry.url, options)
                self.files[entry.stream] = container
                counts.append(expected_frames(container, options))
        self.expected = None if self.live or None in counts else sum(
            c for c in counts if c is not None) or None
        if self.following:
            assert self.params.sources_file is not None
            self.watcher = SourcesWatcher(self.params.sources_file, self.changes.put)

    def expected_frames(self) -> int | None:
        return self.expected

    def _start(self, entry: SourceEntry) -> None:
        stop = self.context.stop_requested or threading.Event()
        options = self._options(entry.url)
        self.context.watch(entry.stream, options.read_timeout if options.live else None,
                           entry.segment)
        self.started[entry.stream] = entry
        reader = StreamReader(self.context.name, entry.stream, entry.url, options, self.queue,
                              stop, self.context.count,
                              container=self.files.pop(entry.stream, None))
        self.readers[entry.stream] = reader
        reader.start()

    def _apply_changes(self) -> Iterator[StreamEnded]:
        """Start and stop streams as the followed file says; the others are untouched."""
        while True:
            try:
                entries = self.changes.get_nowait()
            except queue.Empty:
                return
            wanted = {e.stream: e for e in entries}
            for name, reader in list(self.readers.items()):
                if wanted.get(name) != self.started.get(name):
                    log.info("node '%s': removing stream '%s'", self.context.name, name)
                    reader.remove()
                    del self.readers[name]
                    del self.started[name]
                    self.packet_codecs.pop(name, None)
                    yield StreamEnded(name, "removed")
            for name, entry in wanted.items():
                if name not in self.readers:
                    log.info("node '%s': adding stream '%s'", self.context.name, name)
                    self._start(entry)

    def generate(self) -> Iterator[Frame | Emit | StreamEnded]:
        # A live camera may or may not send sound: sinks stop waiting for it on their own.
        if not self.live and not any(f.streams.audio for f in self.files.values()):
            yield Emit("audio", END)
        if self.watcher is not None:
            self.watcher.start()  # its first reading replaces the streams read at open
        else:
            for entry in self.entries:
                self._start(entry)
        ticked = time.monotonic()
        while True:
            if self.context.stopping():
                yield from self._drain()
                return
            now = time.monotonic()
            if now - ticked >= _TICK_S:
                ticked = now
                yield from self._apply_changes()
                for reader in self.readers.values():
                    reader.check(now)
            if not self.readers and not self.following:
                return
            try:
                kind, reader, item = self.queue.get(timeout=_TICK_S)
            except queue.Empty:
                continue
            current = self.readers.get(reader.stream) is reader
            if kind in _PORTS:
                reader.taken(kind)
                if kind == "packet" and current:
                    yield from self._codec_change(item)
                if current or kind == "event":  # a removed stream's last frames are dropped
                    yield item if kind == "frame" else Emit(_PORTS[kind], item)
            elif kind == "error":
                raise item
            elif kind == "failed":  # a live stream gave up: fatal only if it was the last
                if current:
                    del self.readers[reader.stream]
                    self.started.pop(reader.stream, None)
                    yield StreamEnded(reader.stream, "gave up")
                if not self.readers and not self.following:
                    raise item
                log.error("node '%s': %s", self.context.name, item)
            elif current:  # "end": the reader is done
                del self.readers[reader.stream]
                self.started.pop(reader.stream, None)
                yield StreamEnded(reader.stream)

    def _drain(self) -> Iterator[Frame | Emit]:
        """Stopping: the readers stop, and what they already read is handed over (a
        recording keeps its last second)."""
        for reader in self.readers.values():
            reader.remove()
        while True:
            try:
                kind, reader, item = self.queue.get_nowait()
            except queue.Empty:
                return
            if kind in _PORTS and self.readers.get(reader.stream) is reader:
                reader.taken(kind)
                yield item if kind == "frame" else Emit(_PORTS[kind], item)

    def _codec_change(self, packet: VideoPacket) -> Iterator[StreamEnded]:
        """A camera that comes back with other pictures (a new size, a new codec) cannot
        go on in the same copy: its stream ends, and starts again with this packet."""
        before = self.packet_codecs.get(packet.stream)
        self.packet_codecs[packet.stream] = packet.codec
        if before is not None and before != packet.codec:
            log.info("node '%s': stream '%s' changed its pictures (%s): a new recording "
                     "begins", self.context.name, packet.stream, packet.codec.name)
            yield StreamEnded(packet.stream, "pictures changed")

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for reader in self.readers.values():
            reader.remove()
        for container in self.files.values():  # opened but never read (the graph failed)
            container.close()
        for reader in self.readers.values():
            if reader.thread is not None:
                reader.thread.join(timeout=1.0)


def _entries(p: VideoSourceParams, name: str) -> list[SourceEntry]:
    """The streams ``p`` names (a source called ``name``)."""
    if p.sources_file is not None:
        return load_sources(p.sources_file)
    if p.sources is not None:
        return list(p.sources)
    assert p.url is not None
    if p.streams is None:  # one stream, named after the node
        return [SourceEntry.model_construct(stream=name, url=p.url)]
    return [SourceEntry(stream=s, url=p.url.replace("{stream}", s)) for s in p.streams]
