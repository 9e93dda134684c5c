"""``blur_faces``: make every detected face unrecognisable (blur or pixelate), on the device."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.frame import Detections, Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.images import to_float, to_uint8


class BlurFacesParams(Params):
    """Parameters of ``blur_faces``."""

    method: Literal["blur", "pixelate"] = Field("blur", description="Gaussian blur or blocks")
    margin: float = Field(0.25, ge=0, le=2, description="grow each box by this share of its "
                          "size on every side (hair, ears, chin)")
    blocks: int = Field(8, ge=2, le=64, description="pixelate: blocks across a face; blur: "
                        "the Gaussian's sigma is the face width / blocks")
    hold: float = Field(0.5, ge=0, description="seconds a tracked face's predicted box is "
                        "still blurred after its last detection (needs a track node before)")
    grow: float = Field(2.0, ge=0, description="a predicted box grows by this many standard "
                        "deviations of its centre on every side")
    lookahead: int = Field(0, ge=0, le=300, description="blur each frame with the boxes of "
                           "this many frames before and after it too (delays the output by "
                           "as many frames)")
    fail_closed: bool = Field(True, description="a frame no detection ran on (and no tracker "
                              "covered) is blurred, not passed")
    fail_margin: float | None = Field(None, ge=0, description="fail_closed blurs the last "
                                      "boxes seen, grown by this share of their size; "
                                      "None: the whole frame")


#: a region to blur: (x1, y1, x2, y2) in pixels, margins included
Region = tuple[float, float, float, float]


@dataclass
class _Stream:
    """One stream's frames held for ``lookahead`` and its recent regions."""

    held: deque[tuple[Frame, list[Region]]] = field(default_factory=deque)
    before: deque[list[Region]] = field(default_factory=deque)  # of frames already out
    last: list[Region] = field(default_factory=list)  # the latest boxes seen


class BlurFaces(Stage):
    """Blurs or pixelates the boxes found by a detector (``mtcnn``) with a margin, e.g. to
    anonymise a camera before it is recorded or published. Boxes come from ``Detections``
    on the frame.

    It does not leak a face the detector misses for a moment: after a ``track`` node, a
    face's predicted box is blurred for ``hold`` seconds after its last detection, grown
    by ``grow`` times its uncertainty; with ``lookahead: N`` every frame is also blurred
    with the boxes of the N frames before and after it (a face found one frame late is
    hidden now too; the output is N frames late, in order, with its timing). With
    ``fail_closed`` (the default) a frame that no detection ran on (``mtcnn every: N``
    without a tracker, or no detector at all) is blurred whole (or, with ``fail_margin``,
    where the last faces were), never passed as it is.

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 320, height: 180, duration: 0.2}
      faces: {plugin: mtcnn, input: src}
      hide: {plugin: blur_faces, input: faces, method: pixelate}
      out: {plugin: null_sink, input: hide}
    ```
    """

    name = "blur_faces"
    summary = "blur or pixelate every detected face (anonymise), fail-closed"
    Params = BlurFacesParams
    params: BlurFacesParams
    stream_state = ("streams",)

    def open(self) -> None:
        self.streams: dict[str, _Stream] = {}

    def process(self, frame: Frame) -> list[Frame]:
        state = self.streams.setdefault(frame.stream, _Stream())
        regions = self._regions(frame, state)
        if not self.params.lookahead:
            return [self._blur(frame, regions)]
        state.held.append((frame, regions))
        if len(state.held) <= self.params.lookahead:
            return []
        return [self._release(state)]

    def _release(self, state: _Stream) -> Frame:
        """Blur the oldest held frame with its neighbours' regions and hand it on."""
        frame, own = state.held.popleft()
        around = [r for _, later in state.held for r in later] + \
            [r for earlier in state.before for r in earlier]
        state.before.append(own)
        while len(state.before) > self.params.lookahead:
            state.before.popleft()
        return self._blur(frame, own + around)

    def stream_ended(self, stream: str) -> list[Frame]:
        state = self.streams.pop(stream, None)
        if state is None:
            return []
        return [self._release(state) for _ in range(len(state.held))]

    def flush(self) -> list[Frame]:
        return [frame for stream in list(self.streams) for frame in self.stream_ended(stream)]

    def _regions(self, frame: Frame, state: _Stream) -> list[Region]:
        """What to blur in ``frame`` by its own detections: boxes with their margin, held
        predictions grown by their uncertainty; the whole frame (or the last faces) when
        it fails closed."""
        dets = frame.detections
        ran = frame.meta.get("detected", True) or frame.meta.get("tracked", False)
        if (dets is None or not ran) and self.params.fail_closed:
            if self.params.fail_margin is None or not state.last:
                return [(0.0, 0.0, float(frame.width), float(frame.height))]
            return [_grown(r, self.params.fail_margin) for r in state.last]
        if dets is None:
            return []
        regions = self._boxes(dets)
        state.last = [b for b, _ in regions]
        return [r for _, r in regions]

    def _boxes(self, dets: Detections) -> list[tuple[Region, Region]]:
        """(box, region with margins) for each box that is to be hidden."""
        predicted = dets.extra.get("predicted")
        lost = dets.extra.get("lost")
        sigma = dets.extra.get("sigma")
        out = []
        for k, box in enumerate(dets.boxes.tolist()):
            region = _grown(tuple(box), self.params.margin)
            if predicted is not None and bool(predicted[k]):
                if lost is None or float(lost[k]) > self.params.hold:
                    continue
                extra = self.params.grow * (float(sigma[k]) if sigma is not None else 0.0)
                region = (region[0] - extra, region[1] - extra, region[2] + extra,
                          region[3] + extra)
            out.append((tuple(box), region))
        return out

    def _blur(self, frame: Frame, regions: list[Region]) -> Frame:
        if not regions:
            return frame
        image = frame.image.clone()
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in regions:
            left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
            right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
            if right - left < 2 or bottom - top < 2:
                continue
            region = to_float(image[top:bottom, left:right], 1)
            whole = (right - left, bottom - top) == (width, height)
            image[top:bottom, left:right] = to_uint8(self._hide(region, whole), 1)[0]
        return frame.replace(image=image)

    def _hide(self, region: torch.Tensor, whole: bool = False) -> torch.Tensor:
        h, w = region.shape[-2:]
        blocks = self.params.blocks
        if whole:  # a frame that fails closed: coarse blocks (cheap at 4K)
            blocks *= 2
        if self.params.method == "pixelate" or whole:
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


def _grown(box: Sequence[float], share: float) -> Region:
    """``box`` grown by ``share`` of its width and height on every side."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * share, (y2 - y1) * share
    return (x1 - dx, y1 - dy, x2 + dx, y2 + dy)
