"""``testsrc``: a synthetic moving test pattern, so a graph runs with no input file."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Source


class TestSourceParams(Params):
    """Parameters of ``testsrc``."""

    width: int = Field(640, ge=16, le=8192, description="frame width in pixels")
    height: int = Field(360, ge=16, le=8192, description="frame height in pixels")
    fps: float = Field(30.0, gt=0, le=1000, description="frames per second (sets pts)")
    duration: float = Field(10.0, ge=0, description="seconds of video; 0 runs until stopped")
    realtime: bool = Field(False, description="produce frames no faster than fps (like a camera)")
    pattern: Literal["bars", "person"] = Field("bars", description="bars: colour bars with a "
                                               "moving square; person: a photo of a face, "
                                               "panned")


class TestSource(Source):
    """Colour bars that scroll, with a bright square moving across, one frame per 1/fps;
    or (``pattern: person``) a photo of a person (NASA's portrait of astronaut Eileen
    Collins, public domain, as bundled with scikit-image) panned across a grey background,
    for face detection without a camera.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 1}
      out: {plugin: null_sink, input: src}
    ```
    """

    __test__ = False  # not a pytest class, despite its name
    name = "testsrc"
    summary = "synthetic moving test pattern (no input needed)"
    Params = TestSourceParams
    params: TestSourceParams

    def open(self) -> None:
        p = self.params
        x = torch.linspace(0, 1, p.width)
        y = torch.linspace(0, 1, p.height)[:, None]
        bars = torch.tensor([[235, 235, 235], [235, 235, 16], [16, 235, 235], [16, 235, 16],
                             [235, 16, 235], [235, 16, 16], [16, 16, 235], [16, 16, 16]],
                            dtype=torch.float32)
        band = (x * 8).long().clamp(max=7)
        shade = 0.55 + 0.45 * (1 - y)  # vertical gradient, so scaling errors show
        self.base = (bars[band][None, :, :] * shade[..., None]).to(torch.uint8).contiguous()
        self.side = max(8, min(p.width, p.height) // 6)
        if p.pattern == "person":
            self.photo = _photo(p.height)

    @property
    def live(self) -> bool:
        """With ``realtime``, a test pattern behaves like a camera."""
        return self.params.realtime

    def expected_frames(self) -> int | None:
        return round(self.params.duration * self.params.fps) or None

    def generate(self) -> Iterator[Frame]:
        p = self.params
        total = self.expected_frames()
        rate = Fraction(p.fps).limit_denominator(1001)
        time_base = 1 / rate
        started = time.monotonic()
        index = 0
        while total is None or index < total:
            if p.realtime:
                wait = started + index / p.fps - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            image = self._panned(index) if p.pattern == "person" else self._bars(index)
            yield Frame.from_image(image, pts=index, time_base=time_base,
                                   stream=self.context.name, index=index,
                                   captured=time.monotonic())
            index += 1
            if self.context.stopping():
                return

    def _bars(self, index: int) -> torch.Tensor:
        """Scrolling bars with the white square at its place for frame ``index``."""
        p = self.params
        image = torch.roll(self.base, shifts=index * 2 % p.width, dims=1)
        span_x, span_y = p.width - self.side, p.height - self.side
        x = int((index * 4) % (2 * span_x))
        x = x if x < span_x else 2 * span_x - x
        y = int(span_y * (0.5 + 0.4 * math.sin(index / 15.0)))
        image[y:y + self.side, x:x + self.side] = torch.tensor([255, 255, 255],
                                                               dtype=torch.uint8)
        return image

    def _panned(self, index: int) -> torch.Tensor:
        """The photo moving left and right (4 s a sweep) on grey."""
        p = self.params
        ph, pw = self.photo.shape[:2]
        image = torch.full((p.height, p.width, 3), 118, dtype=torch.uint8)
        travel = p.width - pw
        x = round(travel * (0.5 + 0.5 * math.sin(2 * math.pi * index / (4 * p.fps))))
        y = (p.height - ph) // 2
        src_x = max(0, -x)
        x = max(0, x)
        w = min(pw - src_x, p.width - x)
        image[y:y + ph, x:x + w] = self.photo[:, src_x:src_x + w]
        return image


def _photo(height: int) -> torch.Tensor:
    """The bundled portrait, scaled to 90 % of the frame height, RGB uint8."""
    bgr = cv2.imread(str(Path(__file__).parent / "data" / "astronaut.jpg"))
    side = max(16, round(height * 0.9))
    bgr = cv2.resize(bgr, (side, side), interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1]))
