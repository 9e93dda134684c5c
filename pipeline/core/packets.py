"""Compressed packets, passed through without decoding: audio (always) and video (a
recorder copies a camera's packets instead of decoding and encoding them).

A packet is plain data: its bytes, timestamps, and the :class:`Codec` a muxer needs to
write a stream of such packets. It pickles and compares by value, and nothing in it
refers to the demuxer it came from, so a sink can write it after the input was closed,
or in another process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Codec:
    """The parameters of a compressed stream.

    ``name`` is FFmpeg's codec name (``aac``, ``h264``); ``parameters`` carries everything
    else a muxer or decoder needs (extra data, block alignment, ...), serialised by the
    plugin that demuxed the stream and read back by the one that writes it; the runtime
    never looks inside.
    """

    name: str
    parameters: bytes = b""
    bit_rate: int = 0


@dataclass(frozen=True)
class AudioCodec(Codec):
    """An audio stream's codec."""

    sample_rate: int = 0
    channels: int = 0


@dataclass(frozen=True)
class VideoCodec(Codec):
    """A video stream's codec."""

    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class Packet:
    """One compressed packet of stream ``stream``.

    ``pts``/``dts``/``duration`` count ``time_base`` units; ``keyframe`` is the demuxer's
    flag (a copy of a video stream can only start at a keyframe).
    """

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: Fraction
    codec: Codec
    keyframe: bool = True
    stream: str = "0"

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None."""
        return None if self.pts is None else float(self.pts * self.time_base)

    def shifted(self, ticks: int) -> Packet:
        """The same packet ``ticks`` time-base units later (earlier if negative)."""
        return dataclasses.replace(
            self, pts=None if self.pts is None else self.pts + ticks,
            dts=None if self.dts is None else self.dts + ticks)


@dataclass(frozen=True)
class AudioPacket(Packet):
    """A packet of compressed sound (its ``codec`` is an :class:`AudioCodec`)."""


@dataclass(frozen=True)
class VideoPacket(Packet):
    """A packet of compressed pictures (its ``codec`` is a :class:`VideoCodec`)."""
