"""``resize``: scale frames to a size, on the node's device, batched."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.batching import group_by_size
from pipeline.kit.images import to_float, to_uint8

_SWSCALE = {"nearest": "POINT", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "AREA"}


class ResizeParams(Params):
    """Parameters of ``resize``."""

    width: int | None = Field(None, ge=2, le=16384, description="width (omit: keep aspect)")
    height: int | None = Field(None, ge=2, le=16384, description="height (omit: keep aspect)")
    interpolation: Literal["nearest", "bilinear", "bicubic", "area"] = Field(
        "area", description="area is best for shrinking, bicubic for enlarging")

    @model_validator(mode="after")
    def _one_side(self) -> ResizeParams:
        if self.width is None and self.height is None:
            raise ValueError("give width, height or both")
        return self


class Resize(Stage):
    """Scales each frame; with one side given, the other keeps the aspect ratio (rounded to
    an even number, as video encoders need). Decoded pictures are scaled by FFmpeg's swscale
    without a detour through RGB; tensors are scaled with PyTorch, a batch at a time.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 0.2}
      small: {plugin: resize, input: src, width: 160}
      out: {plugin: null_sink, input: small}
    ```
    """

    name = "resize"
    summary = "scale frames (keeps aspect when one side is given)"
    Params = ResizeParams
    params: ResizeParams
    any_device = True  # decoded pictures stay native; tensors are moved below

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """Output (width, height) for an input of ``width`` x ``height``."""
        w, h = self.params.width, self.params.height
        if w is None:
            assert h is not None
            w = max(2, round(width * h / height / 2) * 2)
        if h is None:
            h = max(2, round(height * w / width / 2) * 2)
        return w, h

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        out: list[Frame | None] = [None] * len(frames)
        rest: list[int] = []
        for i, frame in enumerate(frames):
            size = self.size_for(frame.width, frame.height)
            if size == (frame.width, frame.height):
                out[i] = frame
            elif frame.native is not None and self.device.type == "cpu":
                native = frame.native.scaled(size[0], size[1], self.params.interpolation)
                out[i] = frame.replace(native=native)
            else:
                rest.append(i)
        for group in group_by_size([frames[i] for i in rest]).values():
            indices = [rest[j] for j in group]
            batch = torch.stack([frames[i].to(self.device).image for i in indices])
            w, h = self.size_for(batch.shape[2], batch.shape[1])
            scaled = scale(batch, w, h, self.params.interpolation)
            for j, i in enumerate(indices):
                out[i] = frames[i].replace(image=scaled[j])
        return [f for f in out if f is not None]


def scale(images: torch.Tensor, width: int, height: int, mode: str) -> torch.Tensor:
    """Resize ``uint8 [N, H, W, 3]`` images to ``[N, height, width, 3]``."""
    x = to_float(images, 1)
    if mode == "area":
        y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True,
                          align_corners=False)
    elif mode == "nearest":
        y = F.interpolate(x, size=(height, width), mode="nearest")
    else:
        y = F.interpolate(x, size=(height, width), mode=mode, antialias=True, align_corners=False)
    return to_uint8(y, 1)

