"""Compressed audio between PyAV and the graph: the demuxer's packets become plain
:class:`AudioPacket` data, and a sink writes them back, copied when its container takes the
codec, else encoded to AAC.

A packet carries its codec's parameters as an :class:`AudioCodec`. Its ``parameters`` are
FFmpeg's own description of the stream: a tiny container holding the stream's header and
first packet, written in the first of Matroska, WAV and NUT that takes the codec (Matroska
keeps the extra data of AAC, Opus and Vorbis; WAV the block alignment of WMA and ADPCM).
A sink reads it back as a template for its output stream, or as a decoder when it must
encode, so nothing depends on the demuxer once the packet exists: the input may be closed,
or in another process.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import av

from pipeline.core.errors import MediaError
from pipeline.core.packets import AudioCodec, AudioPacket

log = logging.getLogger("vidgraph")
#: containers tried, in order, to carry a stream's parameters
_CARRIERS = ("matroska", "wav", "nut")
#: how a sink writes audio: copy the packets, encode to AAC, or leave the sound out
AudioMode = Literal["copy", "aac", "none"]
AAC_BIT_RATE = 160_000
_LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}


def audio_codec(stream: Any, first: Any) -> AudioCodec:
    """The :class:`AudioCodec` of a demuxer's audio ``stream``, whose ``first`` packet
    (an ``av.Packet`` with data) goes into the parameters."""
    ctx = stream.codec_context
    for fmt in _CARRIERS:
        try:
            blob = _carrier(stream, first, fmt)
        except (ValueError, av.FFmpegError):
            continue
        return AudioCodec(ctx.name, int(stream.sample_rate or 0), int(ctx.channels or 0),
                          int(ctx.bit_rate or 0), fmt.encode() + b"\0" + blob)
    raise MediaError(f"cannot describe audio codec '{ctx.name}' for remuxing")


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


def audio_packet(packet: Any, codec: AudioCodec, stream: str, shift: int = 0) -> AudioPacket:
    """A demuxed ``av.Packet`` as an :class:`AudioPacket`, ``shift`` time-base units later."""
    pts = None if packet.pts is None else packet.pts + shift
    dts = None if packet.dts is None else packet.dts + shift
    return AudioPacket(bytes(packet), pts, dts, int(packet.duration or 0),
                       Fraction(packet.time_base), codec, bool(packet.is_keyframe), stream)


class _Template:
    """The stream described by an :class:`AudioCodec`, read back from its carrier."""

    def __init__(self, codec: AudioCodec) -> None:
        fmt, _, blob = codec.parameters.partition(b"\0")
        try:
            self.container = av.open(io.BytesIO(blob), "r", format=fmt.decode())
            self.stream = self.container.streams.audio[0]
        except (av.FFmpegError, IndexError, UnicodeDecodeError) as exc:
            raise MediaError(f"unreadable parameters of audio codec '{codec.name}'") from exc
        self.codec = codec

    def fill(self, ctx: Any) -> None:
        """Put the parameters the carrier may not keep (rate, channels, bit rate) on
        ``ctx``."""
        codec = self.codec
        if codec.sample_rate:
            ctx.sample_rate = codec.sample_rate
        if codec.channels and ctx.channels != codec.channels:
            ctx.layout = _LAYOUTS.get(codec.channels, f"{codec.channels}c")
        if codec.bit_rate:
            ctx.bit_rate = codec.bit_rate

    def close(self) -> None:
        self.container.close()


def accepts(fmt: str, codec: AudioCodec, options: dict[str, str] | None = None) -> bool:
    """Whether a container of format ``fmt`` can hold ``codec`` copied: a small file with
    that stream and its first packet is actually written (in memory), so formats that
    take a codec only as experimental, or fail on it at the trailer, say no here rather
    than after the first frame."""
    template = _Template(codec)
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


class AudioWriter:
    """One audio stream of an output container, fed :class:`AudioPacket` objects.

    ``copy`` remuxes the packets unchanged; ``aac`` decodes them and encodes AAC (for a
    container that cannot hold the codec). Create it before the container's header is
    written; :meth:`write` takes packets already on the output's timeline.
    """

    def __init__(self, out: Any, codec: AudioCodec, mode: AudioMode) -> None:
        assert mode != "none"
        self.out = out
        self.codec = codec
        self.mode = mode
        template = _Template(codec)
        try:
            if mode == "copy":
                self.stream = out.add_stream_from_template(template.stream)
                template.fill(self.stream.codec_context)
                self.decoder: Any = None
            else:
                self.decoder = template.stream.codec_context
                template.fill(self.decoder)
                rate = codec.sample_rate or 48000
                self.stream = out.add_stream("aac", rate=rate)
                self.stream.codec_context.layout = "mono" if codec.channels == 1 else "stereo"
                self.stream.codec_context.bit_rate = AAC_BIT_RATE
                self.resampler = av.AudioResampler(format="fltp",
                                                   layout=self.stream.codec_context.layout,
                                                   rate=rate)
        finally:
            if mode == "copy":
                template.close()
            else:
                self._template = template  # the decoder lives in it
        self.next_pts: int | None = None

    def write(self, item: AudioPacket) -> Iterator[Any]:
        """The output packets for one input packet (muxing is the caller's)."""
        packet = av.Packet(item.data)
        packet.pts, packet.dts = item.pts, item.dts
        packet.duration = item.duration
        packet.time_base = item.time_base
        if self.mode == "copy":
            packet.stream = self.stream
            yield packet
            return
        if self.next_pts is None and item.pts is not None:
            # the encoded sound starts where the first packet did, then runs on by samples
            self.next_pts = round(item.pts * item.time_base * self.stream.sample_rate)
        for decoded in self.decoder.decode(packet):
            yield from self._encode(self.resampler.resample(decoded))

    def _encode(self, frames: list[Any]) -> Iterator[Any]:
        for frame in frames:
            frame.pts = self.next_pts or 0
            frame.time_base = Fraction(1, self.stream.sample_rate)
            self.next_pts = frame.pts + frame.samples
            yield from self.stream.encode(frame)

    def flush(self) -> Iterator[Any]:
        """What the decoder and encoder still hold, at the end."""
        if self.mode == "copy":
            return
        for decoded in self.decoder.decode(None):
            yield from self._encode(self.resampler.resample(decoded))
        yield from self._encode(self.resampler.resample(None))
        yield from self.stream.encode(None)
        self._template.close()
