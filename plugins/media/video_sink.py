"""``video_sink``: encode frames to a video file (H.264 MP4 by default), copying audio."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from pydantic import Field

from pipeline.errors import MediaError, ParameterError
from pipeline.frame import AudioPacket, Frame
from pipeline.node import Params, Port, PortKind, Sink

log = logging.getLogger("vidgraph")
#: mpeg4 (and some others) reject time bases with a denominator over 65535.
_MAX_TB_DEN = 65535
_FRAGMENTED = "frag_keyframe+empty_moov+default_base_moof"


class VideoSinkParams(Params):
    """Parameters of ``video_sink``."""

    path: str = Field(description="output file; the extension picks the container (.mp4, .mkv)")
    codec: str = Field("libx264", description="libx264, libx265, libsvtav1, mpeg4, ...")
    crf: int | None = Field(None, ge=0, le=63, description="constant quality (lower is better)")
    preset: str | None = Field(None, description="encoder speed preset, e.g. veryfast, medium")
    bitrate: str | None = Field(None, description="target bitrate, e.g. 4M (instead of crf)")
    pix_fmt: str = Field("yuv420p", description="pixel format of the encoded video")
    gop: int | None = Field(None, ge=1, description="frames between keyframes")
    fps: float | None = Field(None, gt=0, description="frame rate (default: from the input pts)")
    fragmented: bool = Field(False, description="fragmented MP4: playable even if killed")
    options: dict[str, str] = Field(default_factory=dict, description="extra encoder options")


class VideoSink(Sink):
    """Encodes frames with FFmpeg and muxes the audio packets from ``audio`` unchanged.

    Timestamps come from the frames' pts (shifted so the file starts at 0), so dropped frames
    leave gaps and the sound stays in sync. Frames still holding the decoder's picture in
    ``pix_fmt`` are encoded without any colour conversion. The file is finalized on close,
    also after an error or Ctrl+C; ``fragmented: true`` keeps it playable even if the process
    is killed.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 1}
      out: {plugin: video_sink, input: src, path: out/doc_video_sink.mp4, preset: veryfast}
    ```
    """

    name = "video_sink"
    summary = "encode to a video file (H.264 MP4 by default), audio copied"
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
        path = Path(p.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"movflags": _FRAGMENTED} if p.fragmented else {}
        try:
            self.out = av.open(str(path), "w", options=options)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot write '{path}': {exc.strerror or exc}") from exc
        self.video: Any = None
        self.audio: Any = None
        self.audio_pending = "audio" in self.context.connected  # until a packet or its end
        self.first: Frame | None = None  # held until the second frame gives the frame rate
        self.pending: list[Any] = []  # packets held until every stream is known
        self.early_audio: list[AudioPacket] = []  # audio that came before the first frame
        self.t0: float | None = None  # time of the first frame: the file starts there
        self.last_pts = -1
        self.bad_audio = 0
        self.frames = 0

    # -- video -------------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        if self.video is None:
            if self.first is None and self.params.fps is None:
                self.first = frame
                return
            self._start_video(self.first or frame, frame)
            if self.first is not None:
                self._encode(self.first)
                self.first = None
        self._encode(frame)

    def _start_video(self, first: Frame, second: Frame) -> None:
        p = self.params
        rate = Fraction(p.fps).limit_denominator(1001) if p.fps else None
        if rate is None and first.time is not None and second.time is not None:
            gap = second.time - first.time
            rate = Fraction(1 / gap).limit_denominator(1001) if gap > 0 else None
        rate = rate or Fraction(30)
        tb = first.time_base if first.pts is not None else 1 / rate
        if tb.denominator > _MAX_TB_DEN:
            tb = Fraction(1, 60000)
        self.time_base = tb
        self.rate = rate
        self.t0 = first.time or 0.0
        stream = self.out.add_stream(p.codec, rate=rate)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = p.pix_fmt
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.thread_type = "AUTO"
        options = dict(p.options)
        if p.crf is not None:
            options["crf"] = str(p.crf)
        if p.preset is not None:
            options["preset"] = p.preset
        if p.bitrate is not None:
            stream.bit_rate = _parse_bitrate(p.bitrate)
        if p.gop is not None:
            stream.codec_context.gop_size = p.gop
        stream.options = options
        self.video = stream
        early, self.early_audio = self.early_audio, []
        if early:
            self._add_audio(early[0])
            for item in early:
                item.packet.stream = self.audio
            self.pending.extend(item.packet for item in early)

    def _encode(self, frame: Frame) -> None:
        native = frame.native
        if (not frame.has_pixels and native is not None
                and native.format.name == self.params.pix_fmt
                and (native.width, native.height) == (self.video.width, self.video.height)):
            vf = native
            vf.pict_type = av.video.frame.PictureType.NONE  # let the encoder place keyframes
        else:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame.image.cpu().numpy()),
                                            format="rgb24")
        if frame.time is not None:
            pts = round((frame.time - (self.t0 or 0.0)) / self.time_base)
        else:
            pts = round(frame.index / self.rate / self.time_base)
        pts = max(pts, self.last_pts + 1)  # encoders need strictly increasing pts
        self.last_pts = pts
        vf.pts = pts
        vf.time_base = self.time_base
        self._mux(self.video.encode(vf))
        self.frames += 1

    # -- audio -------------------------------------------------------------------------------

    def receive(self, port: str, item: Any) -> None:
        assert port == "audio" and isinstance(item, AudioPacket)
        if self.audio is None:
            if self.video is None:
                self.early_audio.append(item)  # video goes first in the file: wait for it
                return
            if not self.audio_pending:
                return  # audio that starts after the header was written cannot be added
            self._add_audio(item)
        item.packet.stream = self.audio
        self._mux([item.packet])

    def _add_audio(self, first: AudioPacket) -> None:
        self.audio = self.out.add_stream_from_template(first.template)
        self.audio_pending = False

    def input_ended(self, port: str) -> None:
        if port == "audio":
            self.audio_pending = False
            self._mux([])

    # -- muxing ------------------------------------------------------------------------------

    def _mux(self, packets: list[Any]) -> None:
        self.pending.extend(packets)
        if self.video is None or self.audio_pending:
            return
        for packet in self.pending:
            if packet.stream is not self.audio:
                self.out.mux(packet)
            elif self._shift_audio(packet):
                self._mux_audio(packet)
        self.pending.clear()

    def _mux_audio(self, packet: Any) -> None:
        try:
            self.out.mux(packet)
        except av.InvalidDataError as exc:
            # A damaged packet from the source: drop it, keep the sound that is intact.
            self.bad_audio += 1
            if self.bad_audio == 1:
                log.warning("node '%s': dropping damaged audio packets (%s)", self.context.name,
                            exc.strerror or exc)

    def _shift_audio(self, packet: Any) -> bool:
        """Move an audio packet onto the file's timeline; False if it ends before it."""
        if not self.t0 or packet.pts is None:
            return True
        shift = round(self.t0 / packet.time_base)
        end = packet.pts + (packet.duration or 0)
        if end <= shift:
            return False
        packet.pts -= shift
        packet.dts = packet.dts - shift if packet.dts is not None else None
        return True

    def close(self) -> None:
        try:
            if self.first is not None:
                self._start_video(self.first, self.first)
                self._encode(self.first)
            self.audio_pending = False
            if self.video is not None:
                self._mux(self.video.encode(None))
            else:
                log.warning("node '%s': no frames arrived; '%s' holds no video",
                            self.context.name, self.params.path)
        finally:
            self.out.close()


def _parse_bitrate(text: str) -> int:
    units = {"k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
    t = text.strip().lower()
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(float(t))
