"""``video_sink``: encode frames to a file, HLS or an RTSP server, copying audio."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from pydantic import Field

from pipeline.core.errors import MediaError, ParameterError
from pipeline.core.frame import AudioPacket, Frame
from pipeline.core.node import Params, Port, PortKind, Sink
from plugins.media.live import Backoff, redact

from .encoded_output import EncodedOutput, EncoderSettings

log = logging.getLogger("vidgraph")
_FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class VideoSinkParams(Params):
    """Parameters of ``video_sink``."""

    path: str = Field(description="output file (the extension picks the container: .mp4, .mkv, "
                      ".m3u8 for HLS), or rtsp:// to publish; {stream}: one output per stream")
    codec: str = Field("libx264", description="libx264, libx265, libsvtav1, mpeg4, ...")
    crf: int | None = Field(None, ge=0, le=63, description="constant quality (lower is better)")
    preset: str | None = Field(None, description="encoder speed preset, e.g. veryfast, medium")
    bitrate: str | None = Field(None, description="target bitrate, e.g. 4M (instead of crf)")
    pix_fmt: str = Field("yuv420p", description="pixel format of the encoded video")
    gop: int | None = Field(None, ge=1, description="frames between keyframes (default: the "
                            "encoder's; 1 s for RTSP and fragmented, segment_s for HLS)")
    fps: float | None = Field(None, gt=0, description="frame rate (default: from the input pts)")
    fragmented: bool = Field(False, description="fragmented MP4: playable even if killed")
    segment_s: float = Field(2.0, gt=0, description="HLS segment length in seconds")
    options: dict[str, str] = Field(default_factory=dict, description="extra encoder options")
    format_options: dict[str, str] = Field(default_factory=dict, description="extra muxer "
                                           "options, e.g. {hls_list_size: '6'}")
    reconnect_delay: float = Field(0.5, gt=0, description="RTSP: first wait before publishing "
                                   "again after the server went away (s)")
    reconnect_max_delay: float = Field(10.0, gt=0, description="RTSP: the wait doubles up to this")


@dataclass
class _Target:
    """One output destination and its connection state."""

    where: str
    output: EncodedOutput | None = None
    audio_template: Any = None
    backoff: Backoff = field(default_factory=Backoff)
    retry_at: float = 0.0
    dropped: int = 0


class VideoSink(Sink):
    """Encodes frames with FFmpeg and muxes the audio packets from ``audio`` unchanged.

    Timestamps come from the frames' pts (shifted so the output starts at 0), so dropped
    frames leave gaps and the sound stays in sync. Frames still holding the decoder's picture
    in ``pix_fmt`` are encoded without any colour conversion. Files are finalized on close,
    also after an error or Ctrl+C; ``fragmented: true`` keeps an MP4 playable even if the
    process is killed. A path ending in ``.m3u8`` writes HLS (a playlist plus ``.ts``
    segments) for browsers. An ``rtsp://`` path publishes to an RTSP server (ANNOUNCE/RECORD
    over TCP) with low-latency settings (x264 ``zerolatency``, a keyframe every second), and
    publishes again, with backoff, if the server goes away; frames in between are dropped
    and counted. ``{stream}`` in the path gives each stream of a multi-camera source its own
    output.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 1}
      out: {plugin: video_sink, input: src, path: out/doc_video_sink.mp4, preset: veryfast}
    ```
    """

    name = "video_sink"
    summary = "encode to a file, HLS or RTSP (H.264 by default), audio copied"
    inputs = (
        Port("in", PortKind.VIDEO, doc="frames to encode"),
        Port("audio", PortKind.AUDIO, optional=True, doc="audio packets to copy (SRC.audio)"),
    )
    Params = VideoSinkParams
    params: VideoSinkParams

    def open(self) -> None:
        p = self.params
        try:
            av.Codec(p.codec, "w")
        except (av.FFmpegError, av.codec.codec.UnknownCodecError):
            known = sorted(c for c in ("libx264", "libx265", "libsvtav1", "mpeg4", "libvpx-vp9",
                                       "libaom-av1", "h264_nvenc") if c in av.codecs_available)
            raise ParameterError(f"unknown encoder '{p.codec}' (available here include: "
                             f"{', '.join(known)})") from None
        self.publish = p.path.lower().startswith(("rtsp://", "rtsps://"))
        self.settings = self._settings()
        self.targets: dict[str, _Target] = {}
        self.audio_done = "audio" not in self.context.connected
        self.first_stream: str | None = None
        if "{stream}" not in p.path and not self.publish:
            self._connect(self._target(""), time.monotonic())  # a bad path fails right away

    def _settings(self) -> EncoderSettings:
        p = self.params
        options = dict(p.options)
        fmt: str | None = None
        format_options: dict[str, str] = {}
        keyframe_s: float | None = None
        if self.publish:
            fmt, keyframe_s = "rtsp", 1.0
            format_options["rtsp_transport"] = "tcp"
            if p.codec == "libx264":
                options.setdefault("tune", "zerolatency")
        elif p.path.lower().endswith(".m3u8"):
            fmt, keyframe_s = "hls", p.segment_s
            format_options.update(hls_time=f"{p.segment_s:g}", hls_list_size="0",
                                  hls_playlist_type="event")
        elif p.fragmented:
            # A fragment ends at a keyframe: without frequent keyframes "playable at any
            # moment" would lose the encoder's default 250 frames.
            format_options.update(movflags=_FRAGMENTED, flush_packets="1")  # each on disk
            keyframe_s = 1.0
        format_options.update(p.format_options)
        return EncoderSettings(
            codec=p.codec, pix_fmt=p.pix_fmt, crf=p.crf,
            preset=p.preset or ("veryfast" if self.publish else None),
            bitrate=_parse_bitrate(p.bitrate) if p.bitrate else None, gop=p.gop, fps=p.fps,
            keyframe_s=keyframe_s, options=options, format=fmt, format_options=format_options)

    def _target(self, stream: str) -> _Target:
        key = stream if "{stream}" in self.params.path else ""
        target = self.targets.get(key)
        if target is None:
            where = self.params.path.replace("{stream}", stream)
            backoff = Backoff(self.params.reconnect_delay, self.params.reconnect_max_delay)
            target = self.targets[key] = _Target(where, backoff=backoff)
        if key == "" and stream:
            if self.first_stream is None:
                self.first_stream = stream
            elif stream != self.first_stream:
                raise ParameterError(f"frames of streams '{self.first_stream}' and '{stream}' "
                                     "reach one output: put {stream} in 'path'")
        return target

    def _connect(self, target: _Target, now: float) -> EncodedOutput | None:
        """The target's output, opened if needed; None while an RTSP server is away."""
        if target.output is not None:
            return target.output
        if now < target.retry_at:
            return None
        if not self.publish:
            Path(target.where).parent.mkdir(parents=True, exist_ok=True)
        try:
            target.output = EncodedOutput(self.context.name, target.where, self.settings,
                                          not self.audio_done, target.audio_template)
        except MediaError as exc:
            if not self.publish:
                raise
            self._retry_later(target, now, str(exc))
            return None
        if target.backoff.attempts:
            log.info("node '%s': publishing to %s again (%d frames dropped meanwhile)",
                     self.context.name, redact(target.where), target.dropped)
        target.backoff.reset()
        return target.output

    def _retry_later(self, target: _Target, now: float, reason: str) -> None:
        if not target.backoff.attempts:
            log.warning("node '%s': %s; publishing again with backoff", self.context.name,
                        redact(reason))
        target.backoff.attempts += 1
        target.retry_at = now + target.backoff.next_delay()

    def _lost(self, target: _Target, exc: BaseException) -> None:
        """The RTSP server went away mid-stream."""
        assert target.output is not None
        target.output.abandon()
        target.output = None
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        self._retry_later(target, time.monotonic(),
                          f"lost the connection to {redact(target.where)} ({reason})")

    def write(self, frame: Frame) -> None:
        target = self._target(frame.stream)
        output = self._connect(target, time.monotonic())
        if output is None:
            target.dropped += 1
            return
        self._guarded(target, output.write, frame)

    def receive(self, port: str, item: Any) -> None:
        assert port == "audio" and isinstance(item, AudioPacket)
        target = self._target(item.stream)
        if target.audio_template is None:
            target.audio_template = item.template
        output = target.output
        if output is None:
            return  # not started yet (or the RTSP server is away): it starts with video
        self._guarded(target, output.add_audio, item)

    def _guarded(self, target: _Target, action: Callable[[Any], None], item: Any) -> None:
        """Run ``action(item)``; when publishing, a lost server means retry, not failure."""
        try:
            action(item)
        except (OSError, av.FFmpegError) as exc:
            if not self.publish:
                raise
            self._lost(target, exc)

    def input_ended(self, port: str) -> None:
        if port == "audio":
            self.audio_done = True
            for target in self.targets.values():
                if target.output is not None:
                    target.output.audio_ended()

    def close(self) -> None:
        errors: list[BaseException] = []
        for target in self.targets.values():
            if target.output is None:
                continue
            try:
                target.output.close()
            except (OSError, av.FFmpegError) as exc:
                if not self.publish:
                    errors.append(exc)
        if errors:
            raise errors[0]


def _parse_bitrate(text: str) -> int:
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t))
