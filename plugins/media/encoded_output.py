"""One encoded output of ``video_sink``: a file, an HLS playlist or an RTSP publication.

It encodes frames, copies audio packets unchanged, and keeps both on one timeline that
starts at the first frame. The container header is written once every stream is known:
audio that comes before the first frame waits for it; video waits for the first audio
packet, but no longer than :data:`AUDIO_WAIT_FRAMES` (a camera may have no sound).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from pipeline.core.errors import MediaError
from pipeline.core.frame import AudioPacket, Frame
from plugins.media.live import redact

log = logging.getLogger("vidgraph")
#: mpeg4 (and some others) reject time bases with a denominator over 65535.
_MAX_TB_DEN = 65535
#: frames to hold while waiting for a first audio packet before writing without sound
AUDIO_WAIT_FRAMES = 45


@dataclass(frozen=True)
class EncoderSettings:
    """What ``video_sink``'s parameters say about encoding and muxing."""

    codec: str
    pix_fmt: str
    crf: int | None = None
    preset: str | None = None
    bitrate: int | None = None
    gop: int | None = None
    fps: float | None = None
    keyframe_s: float | None = None  # keyframe interval in seconds when gop is not given
    options: dict[str, str] = field(default_factory=dict)  # encoder options
    format: str | None = None  # container format; None: from the extension
    format_options: dict[str, str] = field(default_factory=dict)


class EncodedOutput:
    """Encodes the frames of one stream into one container."""

    def __init__(self, node: str, target: str, settings: EncoderSettings, wait_audio: bool,
                 audio_template: Any = None) -> None:
        self.node = node
        self.target = target
        self.settings = settings
        try:
            self.out = av.open(target, "w", format=settings.format,
                               options=dict(settings.format_options))
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise MediaError(f"cannot write '{redact(target)}': {reason}") from None
        self.video: Any = None
        self.audio: Any = None
        self.audio_template = audio_template
        self.audio_pending = wait_audio and audio_template is None  # until a packet or its end
        self.first: Frame | None = None  # held until the second frame gives the frame rate
        self.pending: list[Any] = []  # packets held until every stream is known
        self.early_audio: list[AudioPacket] = []  # audio that came before the first frame
        self.t0: float | None = None  # time of the first frame: the output starts there
        self.last_pts = -1
        self.bad_audio = 0
        self.frames = 0
        self.held = 0  # video packets held while waiting for audio

    # -- video -------------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        """Encode one frame (the first is held until the second tells the frame rate)."""
        if self.video is None:
            if self.first is None and self.settings.fps is None:
                self.first = frame
                return
            self._start_video(self.first or frame, frame)
            if self.first is not None:
                self._encode(self.first)
                self.first = None
        self._encode(frame)

    def _start_video(self, first: Frame, second: Frame) -> None:
        s = self.settings
        rate = Fraction(s.fps).limit_denominator(1001) if s.fps else None
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
        stream = self.out.add_stream(s.codec, rate=rate)
        stream.width, stream.height = first.width, first.height
        stream.pix_fmt = s.pix_fmt
        stream.time_base = tb
        stream.codec_context.time_base = tb
        stream.thread_type = "AUTO"
        options = dict(s.options)
        if s.crf is not None:
            options["crf"] = str(s.crf)
        if s.preset is not None:
            options["preset"] = s.preset
        if s.bitrate is not None:
            stream.bit_rate = s.bitrate
        if s.gop is not None:
            stream.codec_context.gop_size = s.gop
        elif s.keyframe_s is not None:  # live outputs: a viewer can start within this time
            stream.codec_context.gop_size = max(1, round(float(rate) * s.keyframe_s))
        stream.options = options
        self.video = stream
        if self.audio_template is not None:
            self._add_audio(self.audio_template)
        early, self.early_audio = self.early_audio, []
        if early:
            if self.audio is None:
                self._add_audio(early[0].template)
            for item in early:
                item.packet.stream = self.audio
            self.pending.extend(item.packet for item in early)

    def _encode(self, frame: Frame) -> None:
        native = frame.native
        if (not frame.has_pixels and native is not None
                and native.format.name == self.settings.pix_fmt
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
        packets = self.video.encode(vf)
        if self.audio_pending:
            self.held += 1
            if self.held > AUDIO_WAIT_FRAMES:
                self.audio_pending = False  # no sound is coming: write the video alone
        self._mux(packets)
        self.frames += 1

    # -- audio -------------------------------------------------------------------------------

    def add_audio(self, item: AudioPacket) -> None:
        """Copy one audio packet (the stream is created from the first one's template)."""
        if self.audio is None:
            if self.video is None:
                self.early_audio.append(item)  # video goes first in the file: wait for it
                return
            if not self.audio_pending:
                return  # audio that starts after the header was written cannot be added
            self._add_audio(item.template)
        item.packet.stream = self.audio
        self._mux([item.packet])

    def _add_audio(self, template: Any) -> None:
        self.audio = self.out.add_stream_from_template(template)
        self.audio_template = template
        self.audio_pending = False

    def audio_ended(self) -> None:
        """No more audio is coming: write what was held back."""
        self.audio_pending = False
        self._mux([])

    # -- muxing ------------------------------------------------------------------------------

    def _mux(self, packets: list[Any]) -> None:
        self.pending.extend(packets)
        if self.video is None or self.audio_pending:
            return
        pending, self.pending = self.pending, []
        for packet in pending:
            if packet.stream is not self.audio:
                self.out.mux(packet)
            elif self._shift_audio(packet):
                self._mux_audio(packet)

    def _mux_audio(self, packet: Any) -> None:
        try:
            self.out.mux(packet)
        except av.InvalidDataError as exc:
            # A damaged packet from the source: drop it, keep the sound that is intact.
            self.bad_audio += 1
            if self.bad_audio == 1:
                log.warning("node '%s': dropping damaged audio packets (%s)", self.node,
                            exc.strerror or exc)

    def _shift_audio(self, packet: Any) -> bool:
        """Move an audio packet onto the output's timeline; False if it ends before it."""
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
        """Flush the encoder and finalize the container (trailer, playlist)."""
        try:
            if self.first is not None:
                self._start_video(self.first, self.first)
                self._encode(self.first)
            self.audio_pending = False
            if self.video is not None:
                self._mux(self.video.encode(None))
            else:
                log.warning("node '%s': no frames arrived; '%s' holds no video", self.node,
                            redact(self.target))
        finally:
            self.out.close()

    def abandon(self) -> None:
        """Close after the other end went away, ignoring further errors."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self.out.close()
