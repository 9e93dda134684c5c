"""Real test media: short H.264 (+ AAC) clips with a moving pattern and a tone, written with
PyAV, for plugin tests and benchmarks."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: str | Path, *, seconds: float = 2.0, width: int = 320, height: int = 240,
              fps: int = 30, audio: bool = True, codec: str = "libx264",
              audio_rate: int = 48000, audio_codec: str = "aac", pix_fmt: str = "yuv420p",
              gop: int | None = None,
              pictures: Callable[[int], np.ndarray] | None = None) -> Path:
    """Write a real clip (H.264 + AAC MP4 by default; the extension picks the container)
    with a moving pattern and a 440 Hz tone. ``audio_codec`` may be any encoder FFmpeg has
    (wmav2, pcm_mulaw, adpcm_ima_wav, ...); the tone is converted to what it takes.
    ``gop``: frames from one keyframe to the next (the encoder's choice by default);
    ``pictures(i)``: the RGB picture (height x width x 3) of frame ``i`` instead of the
    pattern."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.options = {"preset": "ultrafast"} if codec == "libx264" else {}
        if gop is not None:
            video.codec_context.gop_size = gop
            video.options = {**video.options, "g": str(gop), "keyint_min": str(gop),
                             "sc_threshold": "0"}
        sound = out.add_stream(audio_codec, rate=audio_rate) if audio else None
        if sound is not None:
            assert isinstance(sound, av.AudioStream)
            sound.layout = "stereo"
            sound.bit_rate = 128_000  # WMA has no default
            sound.codec_context.options = {"strict": "experimental"}  # FFmpeg's own vorbis
        yy, xx = np.mgrid[0:height, 0:width]
        frames = round(seconds * fps)
        for i in range(frames):
            if pictures is not None:
                img = np.ascontiguousarray(pictures(i), dtype=np.uint8)
            else:
                img = np.empty((height, width, 3), np.uint8)
                img[..., 0] = (xx * 255 // max(1, width - 1) + i * 4) % 256
                img[..., 1] = (yy * 255 // max(1, height - 1)) % 256
                img[..., 2] = 128 + 100 * math.sin(i / 5)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        if sound is not None:
            _tone(out, sound, seconds, audio_rate)
    return path


def _tone(out: av.container.OutputContainer, sound: av.AudioStream, seconds: float,
          rate: int) -> None:
    """A 440 Hz stereo tone, in the sample format and frame size the encoder takes."""
    resampler = av.AudioResampler(format=sound.codec_context.format, layout="stereo",
                                  rate=rate, frame_size=sound.codec_context.frame_size or 1024)
    chunk = 1024
    total = round(seconds * rate)
    for start in range(0, total, chunk):
        n = min(chunk, total - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                        layout="stereo")
        af.sample_rate = rate
        af.pts = start
        af.time_base = Fraction(1, rate)
        for converted in resampler.resample(af):
            out.mux(sound.encode(converted))
    for converted in resampler.resample(None):
        out.mux(sound.encode(converted))
    out.mux(sound.encode(None))
