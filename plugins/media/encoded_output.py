"""One encoded output of ``video_sink``: a file, an HLS playlist or an RTSP publication.

It encodes frames, writes audio packets (copied, or encoded to AAC where the container
cannot hold their codec), and keeps both on one timeline that starts at the first frame.
The container header is written once every stream is known: audio that comes before the
first frame waits for it; video waits for the first audio packet, but no longer than
:data:`AUDIO_WAIT_FRAMES` (a camera may have no sound).

Nothing it receives is changed: a decoded picture is copied before the encoder sets its
timestamp, and audio packets are rebuilt from their bytes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.device import compiled_loops
from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.packets import AudioCodec, AudioPacket, VideoPacket

from .audio import AudioMode, AudioWriter
from .host_planes import HostPlanes
from .live import shown
from .picture import DecodedPicture
from .remux import Template, accepts, av_packet

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
    audio: str = "auto"  # auto (copy, else AAC), copy, aac or none
    odd_size: str = "pad"  # pad or crop a size the pixel format cannot take


class EncodedOutput:
    """Encodes the frames of one stream into one container.

    ``count(what, n)`` counts what is lost on the way (damaged audio packets);
    ``audio_codec``, when known (an output opened again), creates the audio stream with the
    video instead of waiting for a packet.
    """

    def __init__(self, node: str, target: str, settings: EncoderSettings, wait_audio: bool,
                 count: Callable[[str, int], None], audio_codec: AudioCodec | None = None
                 ) -> None:
        self.node = node
        self.target = target
        self.settings = settings
        self.count = count
        try:
            self.out = av.open(target, "w", format=settings.format,
                               options=dict(settings.format_options))
        except (av.FFmpegError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise MediaError(f"cannot write '{shown(target)}': {reason}") from None
        self.video: Any = None
        self.audio: AudioWriter | None = None
        self.audio_codec = audio_codec
        # until a packet or the end of the audio input (never with audio: none)
        self.audio_pending = wait_audio and settings.audio != "none"
        self.first: Frame | None = None  # held until the second frame gives the frame rate
        self.pending: list[Any] = []  # packets held until every stream is known
        self.early_audio: list[AudioPacket] = []  # audio that came before the first frame
        self.t0: float | None = None  # time of the first frame: the output starts there
        self.last_pts = -1
        self.bad_audio = 0
        self.frames = 0
        self.held = 0  # video packets held while waiting for audio
        self.failed = False  # writing raised: close() finalises what was written, no more
        self.copying = False  # the pictures are copied packets, not encoded frames
        self.planes = HostPlanes()  # pinned buffers the planes made on a GPU come back to

    # -- video -------------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        """Encode one frame (the first is held until the second tells the frame rate)."""
        self._watched(self._write, frame)

    def _watched(self, action: Callable[[Any], None], item: Any) -> None:
        """``action(item)``; if it raises, the output is marked failed (close() then
        finalises what was written and adds nothing)."""
        try:
            action(item)
        except Exception:
            self.failed = True
            raise

    def _write(self, frame: Frame) -> None:
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
        stream.width, stream.height = self._even_size(first.width, first.height)
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
        self._start_audio()

    def _start_audio(self) -> None:
        """The video stream exists: add the sound's, and write the sound that waited."""
        early, self.early_audio = self.early_audio, []
        codec = early[0].codec if early else self.audio_codec
        if codec is not None and self.settings.audio != "none":
            self._add_audio(codec)
        if early:
            self._mux(self._audio_packets(early))

    def _even_size(self, width: int, height: int) -> tuple[int, int]:
        """The size to encode: chroma-subsampled pixel formats need even sides, so an odd
        one is padded (or cropped, ``odd_size: crop``), and the log says so once."""
        # a 3x3 picture's smallest plane tells the subsampling: 2 wide for 4:2:x, 3 for 4:4:4
        planes = av.VideoFormat(self.settings.pix_fmt, 3, 3).components
        x_step = 2 if min(c.width for c in planes) < 3 else 1
        y_step = 2 if min(c.height for c in planes) < 3 else 1
        grow = self.settings.odd_size == "pad"
        even_w = width + (width % x_step and (1 if grow else -1))
        even_h = height + (height % y_step and (1 if grow else -1))
        if (even_w, even_h) != (width, height):
            if min(even_w, even_h) < 1:
                raise MediaError(f"cannot write '{shown(self.target)}': {width}x{height} "
                                 f"pictures cannot be cropped to the even size "
                                 f"{self.settings.pix_fmt} needs (odd_size: pad)")
            log.info("node '%s': %dx%d is odd and %s needs even sides: %s to %dx%d",
                     self.node, width, height, self.settings.pix_fmt,
                     "padding" if grow else "cropping", even_w, even_h)
        return even_w, even_h

    def _fit(self, image: torch.Tensor) -> torch.Tensor:
        """An RGB picture (``uint8 [H, W, 3]``, on any device) at the encoded size: its
        edge repeated, or cut."""
        height, width = image.shape[:2]
        want_w, want_h = self.video.width, self.video.height
        if (width, height) == (want_w, want_h):
            return image
        image = image[:want_h, :want_w].permute(2, 0, 1)[None].float()
        pad = (0, max(0, want_w - width), 0, max(0, want_h - height))
        return F.pad(image, pad, mode="replicate")[0].permute(1, 2, 0).to(torch.uint8)

    def _picture(self, image: torch.Tensor) -> Any:
        """The encoder's frame of an RGB picture. Made on a GPU, it becomes the encoder's
        4:2:0 planes there and only those come back (half the bytes of RGB); made on the
        host, swscale converts it."""
        fmt = self.settings.pix_fmt
        image = self._fit(image)
        if compiled_loops(image) or not HostPlanes.takes(fmt):
            rgb = np.ascontiguousarray(image.cpu().numpy())
            return av.VideoFrame.from_ndarray(rgb, format="rgb24")
        return av.VideoFrame.from_ndarray(self.planes.download(image, fmt), format=fmt)

    def _encode(self, frame: Frame) -> None:
        vf = None
        native = frame.native
        # The decoder's picture whenever the frame still has it (another branch may have
        # converted it to RGB meanwhile: same picture), so the output does not depend on
        # which thread got there first.
        if (isinstance(native, DecodedPicture)
                and native.format == self.settings.pix_fmt
                and (native.width, native.height) == (self.video.width, self.video.height)):
            vf = native.for_encoder()
            if vf is not None:
                vf.pict_type = av.video.frame.PictureType.NONE  # let the encoder place keyframes
        if vf is None:
            vf = self._picture(frame.image)
        if frame.time is not None:
            pts = round((frame.time - (self.t0 or 0.0)) / self.time_base)
        else:
            pts = round(frame.index / self.rate / self.time_base)
        pts = max(pts, self.last_pts + 1)  # encoders need strictly increasing pts
        self.last_pts = pts
        vf.pts = pts
        vf.time_base = self.time_base
        try:
            packets = self.video.encode(vf)
        except av.FFmpegError as exc:
            if self.frames:
                raise
            # the encoder opens with the first frame: say why it would not, in one line
            raise MediaError(f"cannot write '{shown(self.target)}': {self.settings.codec} "
                             f"cannot encode {self.video.width}x{self.video.height} "
                             f"{self.settings.pix_fmt} ({exc.strerror or exc})") from None
        if self.audio_pending:
            self.held += 1
            if self.held > AUDIO_WAIT_FRAMES:
                self.audio_pending = False  # no sound is coming: write the video alone
        self._mux(packets)
        self.frames += 1

    # -- copied pictures ---------------------------------------------------------------------

    def write_packet(self, item: VideoPacket) -> None:
        """Write one packet of pictures as it is (a recording by copy). The copy starts at
        a keyframe and at the first packet's decoding time."""
        self._watched(self._copy, item)

    def _copy(self, item: VideoPacket) -> None:
        if self.video is None:
            if not item.keyframe:
                self.count("packets_before_keyframe", 1)
                return
            self._start_copy(item)
        stamp = item.dts if item.dts is not None else item.pts
        if stamp is None:
            return
        shift = round((self.t0 or 0.0) / item.time_base)
        packet = av_packet(item.shifted(-shift), self.video)
        if packet.dts is not None and packet.dts <= self.last_pts:
            self.count("packets_out_of_order", 1)  # a muxer takes rising decoding times only
            return
        self.last_pts = packet.dts if packet.dts is not None else self.last_pts
        if self.audio_pending:
            self.held += 1
            if self.held > AUDIO_WAIT_FRAMES:
                self.audio_pending = False
        self._mux([packet])
        self.frames += 1

    def _start_copy(self, first: VideoPacket) -> None:
        template = Template(first.codec)
        try:
            self.video = self.out.add_stream_from_template(template.stream)
            template.fill(self.video.codec_context)
        except ValueError as exc:  # the container cannot hold this codec
            raise MediaError(f"cannot write '{shown(self.target)}': {exc}") from None
        finally:
            template.close()
        self.copying = True
        self.video.time_base = first.time_base
        stamp = first.dts if first.dts is not None else first.pts
        self.t0 = float((stamp or 0) * first.time_base)
        self._start_audio()

    # -- audio -------------------------------------------------------------------------------

    def add_audio(self, item: AudioPacket) -> None:
        """Write one audio packet (its stream is created from the first one's codec)."""
        self._watched(self._add_packet, item)

    def _add_packet(self, item: AudioPacket) -> None:
        if self.settings.audio == "none":
            return
        if self.audio is None:
            if self.video is None:
                self.early_audio.append(item)  # video goes first in the file: wait for it
                return
            if not self.audio_pending:
                return  # audio that starts after the header was written cannot be added
            self._add_audio(item.codec)
        self._mux(self._audio_packets([item]))

    def _add_audio(self, codec: AudioCodec) -> None:
        """Create the audio stream: copied when the container takes the codec (``auto``,
        ``copy``), else AAC (``auto``, ``aac``); says which when it is not a copy."""
        fmt = self.out.format.name.split(",")[0]
        mode: AudioMode = "aac" if self.settings.audio == "aac" else "copy"
        if mode == "copy" and not self._takes(fmt, codec):
            if self.settings.audio == "copy":
                raise MediaError(f"cannot write '{shown(self.target)}': a {fmt} file cannot "
                                 f"hold {codec.name} audio as is (audio_codec: auto or aac "
                                 "encodes it to AAC)")
            mode = "aac"
            log.info("node '%s': %s audio cannot go into %s as is: encoding it to AAC",
                     self.node, codec.name, fmt)
        self.audio = AudioWriter(self.out, codec, mode)
        self.audio_pending = False

    def _takes(self, fmt: str, codec: AudioCodec) -> bool:
        """Whether the container can hold ``codec`` as is, tried on a small file in memory
        (HLS segments are MPEG-TS; an RTSP server's RTP payloads cannot be tried there)."""
        if fmt == "rtsp":
            return True
        if fmt == "hls":
            return accepts("mpegts", codec)
        return accepts(fmt, codec, self.settings.format_options)

    def _audio_packets(self, items: Iterable[AudioPacket]) -> list[Any]:
        """The output packets for ``items``, moved onto the output's timeline."""
        assert self.audio is not None
        packets: list[Any] = []
        for item in items:
            shifted = self._shift_audio(item)
            if shifted is not None:
                packets.extend(self.audio.write(shifted))
        return packets

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
            if self.audio is None or packet.stream is not self.audio.stream:
                self.out.mux(packet)
            else:
                self._mux_audio(packet)

    def _mux_audio(self, packet: Any) -> None:
        try:
            self.out.mux(packet)
        except av.InvalidDataError as exc:
            # A damaged packet from the source: drop it, keep the sound that is intact.
            self.bad_audio += 1
            self.count("damaged_audio_packets", 1)
            if self.bad_audio == 1:
                log.warning("node '%s': dropping damaged audio packets in '%s' (%s)",
                            self.node, shown(self.target), exc.strerror or exc)

    def _shift_audio(self, item: AudioPacket) -> AudioPacket | None:
        """``item`` moved onto the output's timeline; None if it ends before it starts."""
        if item.pts is None:
            return item
        shift = round((self.t0 or 0.0) / item.time_base)
        if item.pts + item.duration < shift:  # a priming packet ending right there stays
            return None
        return item.shifted(-shift) if shift else item

    def close(self) -> None:
        """Flush the encoders and finalize the container (trailer, playlist). An output
        whose encoder never took a frame (it failed to open) has nothing to flush, and no
        file: FFmpeg opens the file with the header, at the first packet."""
        try:
            if self.first is not None and not self.failed:
                self._start_video(self.first, self.first)
                self._encode(self.first)
            self.audio_pending = False
            if self.frames:
                tail = list(self.audio.flush()) if self.audio is not None else []
                self._mux(tail if self.copying else self.video.encode(None) + tail)
            elif self.video is None:
                log.warning("node '%s': no frames arrived; '%s' holds no video", self.node,
                            shown(self.target))
        finally:
            self.out.close()

    def abandon(self) -> None:
        """Close after the other end went away, ignoring further errors."""
        with contextlib.suppress(av.FFmpegError, OSError):
            self.out.close()
