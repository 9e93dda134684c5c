"""What flows along audio edges: compressed packets, passed through without decoding.

An :class:`AudioPacket` is plain data: its bytes, timestamps, and the :class:`AudioCodec`
a muxer needs to write a stream of such packets. It pickles and compares by value, and
nothing in it refers to the demuxer it came from, so a sink can write it after the input
was closed, or in another process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class AudioCodec:
    """The parameters of a compressed audio stream.

    ``name`` is FFmpeg's codec name (``aac``, ``opus``, ``pcm_mulaw``); ``parameters``
    carries everything else a muxer or decoder needs (extra data, block alignment, ...),
    serialised by the plugin that demuxed the stream and read back by the one that writes
    it; the runtime never looks inside.
    """

    name: str
    sample_rate: int
    channels: int
    bit_rate: int = 0
    parameters: bytes = b""


@dataclass(frozen=True)
class AudioPacket:
    """One compressed audio packet of stream ``stream``.

    ``pts``/``dts``/``duration`` count ``time_base`` units; ``keyframe`` is the demuxer's
    flag (most audio packets are keyframes).
    """

    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    time_base: Fraction
    codec: AudioCodec
    keyframe: bool = True
    stream: str = "0"

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None."""
        return None if self.pts is None else float(self.pts * self.time_base)

    def shifted(self, ticks: int) -> AudioPacket:
        """The same packet ``ticks`` time-base units later (earlier if negative)."""
        return dataclasses.replace(
            self, pts=None if self.pts is None else self.pts + ticks,
            dts=None if self.dts is None else self.dts + ticks)
