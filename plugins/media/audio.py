"""Writing sound into an output: its packets copied, or, where the container cannot hold
their codec, decoded and encoded to AAC."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal

import av

from pipeline.core.packets import AudioCodec, AudioPacket

from .remux import Template, av_packet

#: how a sink writes audio: copy the packets, encode to AAC, or leave the sound out
AudioMode = Literal["copy", "aac", "none"]
AAC_BIT_RATE = 160_000


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
        template = Template(codec)
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
        packet = av_packet(item, self.stream if self.mode == "copy" else None)
        if self.mode == "copy":
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
