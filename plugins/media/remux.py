"""Compressed packets between PyAV and the graph: the demuxer's packets become plain
:class:`~pipeline.core.packets.Packet` data, and a sink reads their codec back to write
them as they are (or, for sound, to decode them).

A packet carries its codec's parameters as a :class:`Codec`. Its ``parameters`` are
FFmpeg's own description of the stream: a tiny container holding the stream's header and
first packet, written in the first of Matroska, WAV and NUT that takes the codec (Matroska
keeps the extra data of H.264, AAC, Opus and Vorbis; WAV the block alignment of WMA and
ADPCM). A sink reads it back as a template for its output stream, or as a decoder, so
nothing depends on the demuxer once the packet exists: the input may be closed, or in
another process.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import av

from pipeline.core.errors import MediaError
from pipeline.core.packets import AudioCodec, AudioPacket, Codec, Packet, VideoCodec, VideoPacket

#: containers tried, in order, to carry a stream's parameters: NUT keeps a video stream's
#: extra data as it came (Matroska would turn H.264's Annex B headers into avcC, and an
#: MP4 muxer then takes the camera's Annex B packets for length-prefixed ones)
_CARRIERS = {"video": ("nut", "matroska"), "audio": ("matroska", "wav", "nut")}
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


def codec_of(stream: Any, first: Any) -> Codec:
    """The :class:`AudioCodec` or :class:`VideoCodec` of a demuxer's ``stream``, whose
    ``first`` packet (an ``av.Packet`` with data) goes into the parameters."""
    ctx = stream.codec_context
    for fmt in _CARRIERS.get(stream.type, ("nut",)):
        try:
            blob = fmt.encode() + b"\0" + _carrier(stream, first, fmt)
        except (ValueError, av.FFmpegError):
            continue
        if stream.type == "video":
            return VideoCodec(ctx.name, blob, int(ctx.bit_rate or 0), int(ctx.width or 0),
                              int(ctx.height or 0))
        return AudioCodec(ctx.name, blob, int(ctx.bit_rate or 0), int(stream.sample_rate or 0),
                          int(ctx.channels or 0))
    raise MediaError(f"cannot describe {stream.type} codec '{ctx.name}' for remuxing")


def _carrier(stream: Any, first: Any, fmt: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as out:
        copy = out.add_stream_from_template(stream)
        packet = av.Packet(bytes(first))
        packet.pts = packet.dts = 0
        packet.time_base = first.time_base
        packet.stream = copy
        out.mux(packet)
    return buffer.getvalue()


def packet_of(packet: Any, codec: Codec, stream: str, shift: int = 0) -> Packet:
    """A demuxed ``av.Packet`` as an :class:`AudioPacket` or :class:`VideoPacket` (by its
    codec), ``shift`` time-base units later."""
    kind = VideoPacket if isinstance(codec, VideoCodec) else AudioPacket
    pts = None if packet.pts is None else packet.pts + shift
    dts = None if packet.dts is None else packet.dts + shift
    return kind(bytes(packet), pts, dts, int(packet.duration or 0),
                Fraction(packet.time_base), codec, bool(packet.is_keyframe), stream)


def av_packet(item: Packet, stream: Any = None) -> Any:
    """A new ``av.Packet`` with ``item``'s bytes and timestamps (for ``stream``)."""
    packet = av.Packet(item.data)
    packet.pts, packet.dts = item.pts, item.dts
    packet.duration = item.duration
    packet.time_base = item.time_base
    packet.is_keyframe = item.keyframe
    if stream is not None:
        packet.stream = stream
    return packet


class Template:
    """The stream described by a :class:`Codec`, read back from its carrier: a template
    for an output stream, or (``stream.codec_context``) a decoder. Close it once used."""

    def __init__(self, codec: Codec) -> None:
        fmt, _, blob = codec.parameters.partition(b"\0")
        try:
            self.container = av.open(io.BytesIO(blob), "r", format=fmt.decode())
            self.stream = self.container.streams[0]
        except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:
            raise MediaError(f"unreadable parameters of audio codec '{codec.name}'") from exc
        self.codec = codec

    def fill(self, ctx: Any) -> None:
        """Put the parameters the carrier may not keep (rate, channels, bit rate) on
        ``ctx``."""
        codec = self.codec
        if isinstance(codec, AudioCodec):
            if codec.sample_rate:
                ctx.sample_rate = codec.sample_rate
            if codec.channels and ctx.channels != codec.channels:
                ctx.layout = _LAYOUTS.get(codec.channels, f"{codec.channels}c")
        if codec.bit_rate:
            ctx.bit_rate = codec.bit_rate

    def close(self) -> None:
        self.container.close()


def accepts(fmt: str, codec: Codec, options: dict[str, str] | None = None) -> bool:
    """Whether a container of format ``fmt`` can hold ``codec`` copied: a small file with
    that stream and its first packet is actually written (in memory), so formats that
    take a codec only as experimental, or fail on it at the trailer, say no here rather
    than after the first frame."""
    template = Template(codec)
    try:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=fmt, options=dict(options or {})) as out:
            stream = out.add_stream_from_template(template.stream)
            template.fill(stream.codec_context)
            for packet in template.container.demux(template.stream):
                if packet.size:
                    packet.stream = stream
                    out.mux(packet)
        return True
    except (ValueError, av.FFmpegError):
        return False
    finally:
        template.close()


