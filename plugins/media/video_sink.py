"""``video_sink``: encode frames to a file, HLS or an RTSP server, copying audio."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import av
from pydantic import Field

from pipeline.core.errors import MediaError, ParameterError
from pipeline.core.frame import Frame
from pipeline.core.node import Emit, Params, Port, PortKind, Sink
from pipeline.core.packets import AudioCodec, AudioPacket, VideoPacket
from pipeline.core.streams import StreamEnded, StreamStarted
from pipeline.kit.files import prepare_output

from .encoded_output import EncodedOutput, EncoderSettings
from .hardware import encoder
from .live import Backoff, redact, shown

log = logging.getLogger("vidgraph")
_FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class VideoSinkParams(Params):
    """Parameters of ``video_sink``."""

    path: str = Field(description="output file (the extension picks the container: .mp4, .mkv, "
                      ".m3u8 for HLS), or rtsp:// to publish; {stream}: one output per stream")
    codec: str = Field("libx264", description="libx264, libx265, libsvtav1, mpeg4, ...; "
                       "h264_nvenc, hevc_nvenc on a GPU with NVENC (else their software "
                       "twin, with a warning)")
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
    odd_size: Literal["pad", "crop"] = Field("pad", description="pictures of an odd width or "
                                             "height (yuv420p needs even ones): add a "
                                             "repeated edge, or cut one off")
    audio_codec: Literal["auto", "copy", "aac", "none"] = Field(
        "auto", description="auto: copy the sound where the container takes its codec, else "
        "encode it to AAC; copy: copy or fail; aac: always encode; none: no sound")


#: audio packets a stream's output holds until it opens, or that wait for their session
_HELD_AUDIO = 256


@dataclass
class _Target:
    """One output destination and its connection state."""

    where: str
    output: EncodedOutput | None = None
    backoff: Backoff = field(default_factory=Backoff)
    retry_at: float = 0.0
    dropped: int = 0
    held: list[AudioPacket] = field(default_factory=list)  # sound before the output opened


@dataclass
class _Stream:
    """What the sink follows of one stream. A stream that ends and comes back is a new
    session with a new output. Its sound travels on its own edge, ahead of the video or
    behind it: sound of a session whose video has not started yet waits in ``ahead``, and
    an output is finalised once both its video and its sound have ended."""

    video: int = 0  # sessions started on the video input
    video_open: bool = False
    audio: int = 0  # sessions started on the audio input
    audio_open: bool = False
    target: _Target | None = None
    codec: AudioCodec | None = None  # the sound's codec, once known
    ahead: list[tuple[int, AudioPacket]] = field(default_factory=list)

    @property
    def over(self) -> bool:
        """Whether nothing is left to follow (until the stream comes back)."""
        return not (self.video_open or self.audio_open or self.ahead)


class VideoSink(Sink):
    """Encodes frames with FFmpeg and writes the audio packets from ``audio``: copied
    unchanged where the container takes their codec, else encoded to AAC (``audio_codec``
    chooses; the log says when the sound is not copied).

    Timestamps come from the frames' pts (shifted so the output starts at 0), so dropped
    frames leave gaps and the sound stays in sync. Frames still holding the decoder's picture
    in ``pix_fmt`` are encoded without any colour conversion. Files are finalized on close,
    also after an error or Ctrl+C; ``fragmented: true`` keeps an MP4 playable even if the
    process is killed. A path ending in ``.m3u8`` writes HLS (a playlist plus ``.ts``
    segments) for browsers. An ``rtsp://`` path publishes to an RTSP server (ANNOUNCE/RECORD
    over TCP) with low-latency settings (x264 ``zerolatency``, a keyframe every second), and
    publishes again, with backoff, if the server goes away; frames in between are dropped
    and counted. ``{stream}`` in the path gives each stream of a multi-camera source its own
    output, finalised when that stream ends (a camera removed from the sources file); a
    stream that comes back gets a new file beside it (``cam1-2.mp4``), never over it.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 1}
      out: {plugin: video_sink, input: src, path: out/doc_video_sink.mp4, preset: veryfast}
    ```
    """

    name = "video_sink"
    summary = ("encode to a file, HLS or RTSP (H.264 by default), or copy packets; audio "
               "copied or AAC")
    inputs = (
        Port("in", PortKind.VIDEO, optional=True, doc="frames to encode"),
        Port("audio", PortKind.AUDIO, optional=True, doc="audio packets to copy (SRC.audio)"),
        Port("packets", PortKind.PACKETS, optional=True,
             doc="compressed pictures to copy instead of frames (SRC.packets)"),
    )
    Params = VideoSinkParams
    params: VideoSinkParams
    stream_state = ("streams",)
    writes_to = ("path",)

    @classmethod
    def check_inputs(cls, connected: set[str]) -> str | None:
        if ("in" in connected) == ("packets" in connected):
            return ("connect 'input' (frames to encode) or 'packets' (SRC.packets, to copy "
                    "them), one of the two")
        return None

    @classmethod
    def records(cls, params: Params) -> bool:
        """A file or HLS is a recording: nothing on its way may be dropped. Publishing to
        an RTSP server is live: there the newest picture matters more."""
        assert isinstance(params, VideoSinkParams)
        return not params.path.lower().startswith(("rtsp://", "rtsps://"))

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
        self.streams: dict[str, _Stream] = {}
        self.used: dict[str, int] = {}  # files written in this run -> how many times
        self.audio_done = "audio" not in self.context.connected
        self.first_stream: str | None = None
        if "{stream}" not in p.path and not self.publish:
            # a bad path fails right away, before any frame
            state = self.streams[""] = _Stream(target=_Target(self._fresh(p.path)))
            assert state.target is not None
            self._connect(state, state.target, time.monotonic())

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
        codec = encoder(p.codec, self.context.name, shown(p.path))
        crf, preset = p.crf, p.preset or ("veryfast" if self.publish else None)
        if codec.endswith("_nvenc"):  # NVENC's constant quality is cq; its presets p1-p7
            if crf is not None:
                options.setdefault("cq", str(crf))
            crf, preset = None, p.preset
        return EncoderSettings(
            codec=codec, pix_fmt=p.pix_fmt, crf=crf, preset=preset,
            bitrate=_parse_bitrate(p.bitrate) if p.bitrate else None, gop=p.gop, fps=p.fps,
            keyframe_s=keyframe_s, options=options, format=fmt, format_options=format_options,
            audio=p.audio_codec, odd_size=p.odd_size)

    def _key(self, stream: str) -> str:
        """Where a stream's state is kept: by name with ``{stream}``, else all in one."""
        if "{stream}" in self.params.path:
            return stream
        if stream and self.first_stream is None:
            self.first_stream = stream
        elif stream and stream != self.first_stream:
            raise ParameterError(f"frames of streams '{self.first_stream}' and '{stream}' "
                                 "reach one output: put {stream} in 'path'")
        return ""

    def _stream(self, stream: str) -> _Stream:
        return self.streams.setdefault(self._key(stream), _Stream())

    def _new_target(self, stream: str) -> _Target:
        where = self.params.path.replace("{stream}", stream)
        segment = self.context.segment(stream)
        if segment > 1 and not self.publish:  # the camera's earlier segments stay as written
            path = Path(where)
            where = str(path.with_name(f"{path.stem}-s{segment}{path.suffix}"))
        where = self._fresh(where)
        backoff = Backoff(self.params.reconnect_delay, self.params.reconnect_max_delay)
        return _Target(where, backoff=backoff)

    def _fresh(self, where: str) -> str:
        """``where``, or a numbered name beside it if this run already wrote it (a stream
        that ended and came back)."""
        if self.publish:
            return where
        times = self.used.get(where, 0)
        self.used[where] = times + 1
        if not times:
            return where
        path = Path(where)
        return str(path.with_name(f"{path.stem}-{times + 1}{path.suffix}"))

    def _connect(self, state: _Stream, target: _Target, now: float) -> EncodedOutput | None:
        """The target's output, opened if needed; None while an RTSP server is away."""
        if target.output is not None:
            return target.output
        if now < target.retry_at:
            return None
        if not self.publish:
            prepare_output(target.where)
        try:
            output = EncodedOutput(self.context.name, target.where, self.settings,
                                   not self.audio_done, self.context.count, state.codec)
        except MediaError as exc:
            if not self.publish:
                raise
            self._retry_later(target, now, str(exc))
            return None
        target.output = output
        if target.backoff.attempts:
            log.info("node '%s': publishing to %s again (%d frames dropped meanwhile)",
                     self.context.name, shown(target.where), target.dropped)
        target.backoff.reset()
        held, target.held = target.held, []
        for item in held:
            self._guarded(target, output.add_audio, item)
        return target.output

    def _retry_later(self, target: _Target, now: float, reason: str) -> None:
        if not target.backoff.attempts:
            log.warning("node '%s': %s; publishing again with backoff", self.context.name,
                        redact(reason, target.where))
        target.backoff.attempts += 1
        target.retry_at = now + target.backoff.next_delay()

    def _lost(self, target: _Target, exc: BaseException) -> None:
        """The RTSP server went away mid-stream."""
        assert target.output is not None
        target.output.abandon()
        target.output = None
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        self._retry_later(target, time.monotonic(),
                          f"lost the connection to {shown(target.where)} ({reason})")

    def stream_started(self, stream: str) -> None:
        """A new session of ``stream``: a new output, and the sound that came ahead."""
        state = self._stream(stream)
        if state.target is not None and state.video:  # the last session's sound is late
            self._finish(state.target)
            state.target = None
        state.video += 1
        state.video_open = True
        if state.target is None:  # (a single output is opened, and checked, by open())
            state.target = self._new_target(stream)
        ahead, state.ahead = state.ahead, []
        for session, item in ahead:
            if session == state.video:
                self._sound(state, item)
            elif session > state.video:
                state.ahead.append((session, item))

    def write(self, frame: Frame) -> None:
        self._picture(frame.stream, frame, EncodedOutput.write)

    def _picture(self, stream: str, item: Frame | VideoPacket,
                 write: Callable[[EncodedOutput, Any], None]) -> None:
        """A frame to encode or a packet to copy, into its stream's output."""
        state = self._stream(stream)
        if state.target is None:  # pictures without a start marker (a node test): start now
            self.stream_started(stream)
        target = state.target
        assert target is not None
        output = self._connect(state, target, time.monotonic())
        if output is None:
            target.dropped += 1
            return
        self._guarded(target, partial(write, output), item)

    def receive(self, port: str, item: Any) -> None:
        if port == "packets":
            self._packets(item)
            return
        if isinstance(item, StreamStarted):
            state = self._stream(item.stream)
            state.audio += 1
            state.audio_open = True
            return
        if isinstance(item, StreamEnded):
            state = self._stream(item.stream)
            state.audio_open = False
            if not state.video_open and state.audio == state.video:
                self._end_output(state)
            self._forget_if_over(self._key(item.stream), state)
            return
        assert isinstance(item, AudioPacket)
        state = self._stream(item.stream)
        state.codec = state.codec or item.codec
        session = state.audio or state.video  # without markers: the current session
        if session > state.video:
            state.ahead = [*state.ahead[-_HELD_AUDIO + 1:], (session, item)]
        elif session == state.video:
            self._sound(state, item)

    def _packets(self, item: Any) -> None:
        """Copied pictures: their markers are the video side's, their packets its frames."""
        if isinstance(item, StreamStarted):
            self.stream_started(item.stream)
        elif isinstance(item, StreamEnded):
            self.stream_ended(item.stream)
        else:
            assert isinstance(item, VideoPacket)
            self._picture(item.stream, item, EncodedOutput.write_packet)

    def _sound(self, state: _Stream, item: AudioPacket) -> None:
        """Write one packet of the current session (held until its output opens)."""
        target = state.target
        if target is None:
            return
        if target.output is None:
            target.held = [*target.held[-_HELD_AUDIO + 1:], item]
            return
        self._guarded(target, target.output.add_audio, item)

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
            for name, state in list(self.streams.items()):
                state.audio_open = False
                state.ahead = []
                if state.target is not None and state.target.output is not None:
                    state.target.output.audio_ended()
                if state.video and not state.video_open:  # a session whose sound was late
                    self._end_output(state)
                self._forget_if_over(name, state)

    def stream_ended(self, stream: str) -> Sequence[Frame | Emit]:
        """A session of ``stream`` has ended: finalise its output now, so it is playable
        while the other streams go on."""
        key = self._key(stream)
        state = self.streams.get(key)
        if state is not None:
            state.video_open = False
            if not (state.audio_open and state.audio == state.video):
                self._end_output(state)  # else when its sound ends too
            self._forget_if_over(key, state)
        return ()

    def _end_output(self, state: _Stream) -> None:
        target, state.target = state.target, None
        if target is not None:
            self._finish(target)

    def _forget_if_over(self, key: str, state: _Stream) -> None:
        if state.over and state.target is None and self.streams.get(key) is state:
            del self.streams[key]

    def _finish(self, target: _Target) -> None:
        """Finalise one output; a file that cannot be finished is an error naming it."""
        output, target.output = target.output, None
        if output is None:
            return
        try:
            output.close()
        except (OSError, av.FFmpegError) as exc:
            if not self.publish:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise MediaError(f"cannot finish '{target.where}': {reason}") from None

    def close(self) -> None:
        errors: list[MediaError] = []
        for state in self.streams.values():
            if state.target is None:
                continue
            try:
                self._finish(state.target)
            except MediaError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _parse_bitrate(text: str) -> int:
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t))
