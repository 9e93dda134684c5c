"""Real test media: short H.264 (+ AAC) clips with a moving pattern and a tone, written with
PyAV, for plugin tests and benchmarks."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: str | Path, *, seconds: float = 2.0, width: int = 320, height: int = 240,
              fps: int = 30, audio: bool = True, codec: str = "libx264",
              audio_rate: int = 48000) -> Path:
    """Write a real H.264 (+ AAC) MP4 with a moving pattern and a 440 Hz tone."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=audio_rate) if audio else None
        if sound is not None:
            assert isinstance(sound, av.AudioStream)
            sound.layout = "stereo"
        yy, xx = np.mgrid[0:height, 0:width]
        frames = round(seconds * fps)
        for i in range(frames):
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
            chunk = 1024
            total = round(seconds * audio_rate)
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                t = (np.arange(start, start + n) / audio_rate).astype(np.float32)
                tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp",
                                                layout="stereo")
                af.sample_rate = audio_rate
                af.pts = start
                af.time_base = Fraction(1, audio_rate)
                out.mux(sound.encode(af))
            out.mux(sound.encode(None))
    return path
