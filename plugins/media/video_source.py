"""``video_source``: decode a video file or stream with FFmpeg (through PyAV)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from pydantic import Field

from pipeline.errors import MediaError
from pipeline.frame import AudioPacket, Frame
from pipeline.node import END, Emit, Params, Port, PortKind, Source

log = logging.getLogger("vidgraph")
_NETWORK = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://", "srt://")


class VideoSourceParams(Params):
    """Parameters of ``video_source``."""

    url: str = Field(description="a file FFmpeg reads, or an rtsp/http(s) URL")
    loop: bool = Field(False, description="start again at the end (pts keep increasing)")
    start: float = Field(0.0, ge=0, description="seconds to skip at the start (seeks)")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")
    open_timeout: float = Field(10.0, gt=0, description="seconds to wait for a network URL")
    read_timeout: float = Field(10.0, gt=0, description="seconds a network read may stall")


class VideoSource(Source):
    """Decodes the first video stream of ``url`` into frames, with the demuxer's pts.

    Compressed audio packets of the first audio stream go, undecoded, to the ``audio`` port
    (connect it to a ``video_sink``'s ``audio`` input to copy the sound). Frames keep the
    decoder's own picture, so a graph that never reads pixels encodes it without converting
    to RGB. Damaged data is skipped with a warning: the frames that decode are kept.

    ```yaml
    nodes:
      src: {plugin: video_source, url: input.mp4, max_frames: 30}
      out: {plugin: null_sink, input: src}
    ```
    """

    name = "video_source"
    summary = "decode a video file or stream (FFmpeg); audio packets on 'audio'"
    outputs = (
        Port("video", PortKind.VIDEO, doc="decoded frames"),
        Port("audio", PortKind.AUDIO, optional=True, doc="compressed audio packets"),
    )
    Params = VideoSourceParams
    params: VideoSourceParams

    def open(self) -> None:
        url = self.params.url
        options: dict[str, Any] = {}
        if url.startswith(_NETWORK):
            options["timeout"] = (self.params.open_timeout, self.params.read_timeout)
        elif not Path(url).exists():
            raise FileNotFoundError(2, "No such file or directory", url)
        try:
            self.container = av.open(url, "r", **options)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot open '{url}': {exc.strerror or exc}") from exc
        if not self.container.streams.video:
            self.container.close()
            raise MediaError(f"'{url}' has no video stream")
        self.video = self.container.streams.video[0]
        self.video.thread_type = "AUTO"  # frame + slice threads: several times faster decode
        self.audio = self.container.streams.audio[0] if self.container.streams.audio else None
        self.is_file = not url.startswith(_NETWORK)

    def expected_frames(self) -> int | None:
        if self.params.loop:
            return self.params.max_frames
        v = self.video
        count = v.frames
        rate = v.average_rate or v.guessed_rate
        if not count and v.duration and rate:
            count = int(float(v.duration * v.time_base) * float(rate))
        if count and self.params.start and rate:
            count = max(0, count - int(self.params.start * float(rate)))
        if self.params.max_frames:
            count = min(count, self.params.max_frames) if count else self.params.max_frames
        return count or None

    def generate(self) -> Iterator[Frame | Emit]:
        if self.audio is None:
            yield Emit("audio", END)
        index = 0
        offset_s = 0.0  # added to timestamps on each loop, so they keep increasing
        meta = {"source": Path(self.params.url).name} if self.is_file else {}
        vtb = Fraction(self.video.time_base)
        frame_s = float(1 / (self.video.average_rate or 30))
        while True:
            end_s = offset_s
            for item in self._pass(offset_s):
                if isinstance(item, Emit):
                    yield item
                    continue
                if self.params.max_frames and index >= self.params.max_frames:
                    return
                vf, pts = item
                frame = Frame(pts=pts, time_base=vtb, stream=self.context.name, index=index,
                              captured=time.monotonic(), meta=meta, native=vf)
                index += 1
                if frame.time is not None:
                    end_s = max(end_s, frame.time + frame_s)
                yield frame
            if not self.params.loop or self.context.stopping() or index == 0:
                return
            offset_s = end_s
            self.container.seek(0)

    def _pass(self, offset_s: float) -> Iterator[tuple[Any, int | None] | Emit]:
        """One pass from ``start``: audio Emits and (decoded picture, pts shifted by
        ``offset_s``) pairs."""
        start = self.params.start
        vtb = self.video.time_base
        if start:
            self.container.seek(int(start / vtb), stream=self.video)
        streams = [s for s in (self.video, self.audio) if s is not None]
        v_shift = round(offset_s / vtb)
        errors = 0
        try:
            for packet in self.container.demux(*streams):
                if packet.stream is self.audio:
                    if packet.dts is None or (
                            start and packet.pts is not None
                            and packet.pts * packet.time_base < start):
                        continue
                    if offset_s:
                        shift = round(offset_s / packet.time_base)
                        packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                    yield Emit("audio", AudioPacket(packet, self.audio, self.context.name))
                    continue
                try:
                    decoded = packet.decode()
                except av.InvalidDataError as exc:
                    errors += 1
                    if errors == 1:
                        log.warning("node '%s': skipping damaged data in '%s' (%s)",
                                    self.context.name, self.params.url, exc.strerror or exc)
                    continue
                for vf in decoded:
                    if start and vf.time is not None and vf.time < start - 1e-6:
                        continue
                    yield vf, (None if vf.pts is None else vf.pts + v_shift)
        except av.FFmpegError as exc:
            # A truncated file ends here: keep what was decoded, say what happened.
            log.warning("node '%s': '%s' ends early: %s", self.context.name, self.params.url,
                        exc.strerror or exc)

    def close(self) -> None:
        self.container.close()

