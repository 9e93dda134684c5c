"""``blur_faces``: make every detected face unrecognisable (blur or pixelate), on the device."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.images import to_float, to_uint8


class BlurFacesParams(Params):
    """Parameters of ``blur_faces``."""

    method: Literal["blur", "pixelate"] = Field("blur", description="Gaussian blur or blocks")
    margin: float = Field(0.25, ge=0, le=2, description="grow each box by this share of its "
                          "size on every side (hair, ears, chin)")
    blocks: int = Field(8, ge=2, le=64, description="pixelate: blocks across a face; blur: "
                        "the Gaussian's sigma is the face width / blocks")


class BlurFaces(Stage):
    """Blurs or pixelates the boxes found by a detector (``mtcnn``) with a margin, e.g. to
    anonymise a camera before it is recorded or published. Boxes come from ``Detections``
    on the frame; a frame without them passes unchanged.

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 320, height: 180, duration: 0.2}
      faces: {plugin: mtcnn, input: src}
      hide: {plugin: blur_faces, input: faces, method: pixelate}
      out: {plugin: null_sink, input: hide}
    ```
    """

    name = "blur_faces"
    summary = "blur or pixelate every detected face (anonymise)"
    Params = BlurFacesParams
    params: BlurFacesParams

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        if dets is None or len(dets) == 0:
            return frame
        image = frame.image.clone()
        height, width = image.shape[:2]
        m = self.params.margin
        for x1, y1, x2, y2 in dets.boxes.tolist():
            dx, dy = (x2 - x1) * m, (y2 - y1) * m
            left, top = max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy))
            right, bottom = min(width, math.ceil(x2 + dx)), min(height, math.ceil(y2 + dy))
            if right - left < 2 or bottom - top < 2:
                continue
            region = to_float(image[top:bottom, left:right], 1)
            image[top:bottom, left:right] = to_uint8(self._hide(region), 1)[0]
        return frame.replace(image=image)

    def _hide(self, region: torch.Tensor) -> torch.Tensor:
        h, w = region.shape[-2:]
        blocks = self.params.blocks
        if self.params.method == "pixelate":
            size = (max(1, round(blocks * h / w)), blocks)
            return F.interpolate(F.interpolate(region, size=size, mode="area"), size=(h, w),
                                 mode="nearest")
        sigma = max(1.0, w / blocks)
        radius = min(int(3 * sigma), max(1, min(h, w) - 1))
        taps = torch.arange(-radius, radius + 1, device=region.device, dtype=region.dtype)
        kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
        kernel = (kernel / kernel.sum()).repeat(3, 1, 1, 1)  # one per channel
        out = F.pad(region, (radius, radius, 0, 0), mode="replicate")
        out = F.conv2d(out, kernel.reshape(3, 1, 1, -1), groups=3)
        out = F.pad(out, (0, 0, radius, radius), mode="replicate")
        return F.conv2d(out, kernel.reshape(3, 1, -1, 1), groups=3)
