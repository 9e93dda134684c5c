"""``blur_faces``: make every detected face unrecognisable (blur or pixelate), on the device."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.device import compiled_loops
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


@dataclass
class _Regions:
    """What to hide in one frame: ``boxes`` ``[N, 4]`` (x1, y1, x2, y2 in pixels, margins
    included; an empty box hides nothing) on the frame's device, or the ``whole`` frame."""

    boxes: torch.Tensor
    whole: bool = False

    @staticmethod
    def joined(parts: list[_Regions]) -> _Regions:
        """All of ``parts`` together (one concatenation, on the first part's device)."""
        device = parts[0].boxes.device
        return _Regions(torch.cat([p.boxes.to(device) for p in parts]),
                        any(p.whole for p in parts))


@dataclass
class _Stream:
    """One stream's frames held for ``lookahead`` and its recent regions."""

    held: deque[tuple[Frame, _Regions]] = field(default_factory=deque)
    before: deque[_Regions] = field(default_factory=deque)  # of frames already out
    last: torch.Tensor | None = None  # the latest boxes seen


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
        regions = _Regions.joined([own, *(r for _, r in state.held), *state.before])
        state.before.append(own)
        while len(state.before) > self.params.lookahead:
            state.before.popleft()
        return self._blur(frame, regions)

    def stream_ended(self, stream: str) -> list[Frame]:
        state = self.streams.pop(stream, None)
        if state is None:
            return []
        return [self._release(state) for _ in range(len(state.held))]

    def flush(self) -> list[Frame]:
        return [frame for stream in list(self.streams) for frame in self.stream_ended(stream)]

    def _regions(self, frame: Frame, state: _Stream) -> _Regions:
        """What to blur in ``frame`` by its own detections: boxes with their margin, held
        predictions grown by their uncertainty; the whole frame (or the last faces) when
        it fails closed."""
        dets = frame.detections
        ran = frame.meta.get("detected", True) or frame.meta.get("tracked", False)
        if (dets is None or not ran) and self.params.fail_closed:
            if self.params.fail_margin is None or state.last is None or not len(state.last):
                return _Regions(_NO_BOXES.to(frame.device), whole=True)
            return _Regions(_grown(state.last, self.params.fail_margin))
        if dets is None:
            return _Regions(_NO_BOXES.to(frame.device))
        boxes, regions = self._boxes(dets)
        state.last = boxes
        return _Regions(regions)

    def _boxes(self, dets: Detections) -> tuple[torch.Tensor, torch.Tensor]:
        """The boxes to be hidden, and their regions with margins; a predicted box that
        is no longer held is made empty rather than dropped (no host sync to count)."""
        boxes = dets.boxes.float()
        regions = _grown(boxes, self.params.margin)
        predicted = dets.extra.get("predicted")
        if predicted is None:
            return boxes, regions
        device = boxes.device
        predicted = torch.as_tensor(predicted, device=device).bool()
        lost, sigma = dets.extra.get("lost"), dets.extra.get("sigma")
        stale = predicted if lost is None else \
            predicted & (torch.as_tensor(lost, device=device) > self.params.hold)
        if sigma is not None:
            extra = self.params.grow * torch.as_tensor(sigma, device=device, dtype=boxes.dtype)
            extra = torch.where(predicted, extra, 0.0)
            regions = regions + extra[:, None] * _OUTWARD.to(device)
        corner = stale[:, None]
        return (torch.where(corner, boxes[:, :2].repeat(1, 2), boxes),
                torch.where(corner, regions[:, :2].repeat(1, 2), regions))

    def _blur(self, frame: Frame, regions: _Regions) -> Frame:
        image = frame.image
        if regions.whole:  # a frame that fails closed: coarse blocks (cheap at 4K)
            whole = self._pixelate(to_float(image, 1), self.params.blocks * 2)
            return frame.replace(image=to_uint8(whole, 1)[0])
        if not len(regions.boxes):
            return frame
        if compiled_loops(image):
            return frame.replace(image=self._blur_each(image, regions.boxes))
        return frame.replace(image=self._blur_all(image, regions.boxes))

    def _blur_each(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Region by region, each at its own size (host pixels: the loop costs nothing)."""
        image = image.clone()
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in boxes.tolist():
            left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
            right, bottom = min(width, math.ceil(x2)), min(height, math.ceil(y2))
            if right - left < 2 or bottom - top < 2:
                continue
            region = to_float(image[top:bottom, left:right], 1)
            if self.params.method == "pixelate":
                hidden = self._pixelate(region, self.params.blocks)
            else:
                hidden = _gaussian(region, max(1.0, (right - left) / self.params.blocks))
            image[top:bottom, left:right] = to_uint8(hidden, 1)[0]
        return image

    def _blur_all(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Every region at once, with neither a loop over them nor a host sync (the GPU's
        way): each region is averaged down to a small crop (exact area means, from an
        integral image), pixelated or blurred there, and sampled back where it lies."""
        pixelate = self.params.method == "pixelate"
        size = self.params.blocks * (1 if pixelate else _BLUR_SAMPLES)
        height, width = image.shape[:2]
        device = image.device
        left = boxes[:, 0].floor().clamp(0, width).long()
        right = boxes[:, 2].ceil().clamp(0, width).long().maximum(left)
        top = boxes[:, 1].floor().clamp(0, height).long()
        bottom = boxes[:, 3].ceil().clamp(0, height).long().maximum(top)
        rows, cols = _cells(top, bottom, size), _cells(left, right, size)
        table = _integral(image)
        rows0, rows1 = rows[0][:, :, None], rows[1][:, :, None]
        cols0, cols1 = cols[0][:, None, :], cols[1][:, None, :]
        sums = table[rows1, cols1] - table[rows0, cols1] - table[rows1, cols0] + \
            table[rows0, cols0]
        area = ((rows1 - rows0) * (cols1 - cols0)).clamp(min=1)
        crops = (sums / area[..., None]).float().permute(0, 3, 1, 2)  # [N, 3, S, S]
        if not pixelate:  # the face width / blocks, as on the host
            crops = _gaussian(crops, float(_BLUR_SAMPLES))
        ys = torch.arange(height, device=device)
        xs = torch.arange(width, device=device)
        inside = ((ys >= top[:, None]) & (ys < bottom[:, None]))[:, :, None] & \
            ((xs >= left[:, None]) & (xs < right[:, None]))[:, None, :]
        covered = inside.any(0)
        owner = inside.to(torch.uint8).argmax(0)  # a region that covers each pixel
        u = _within(xs[None, :], left[owner], right[owner], size, pixelate)
        v = _within(ys[:, None], top[owner], bottom[owner], size, pixelate)
        # the crops side by side; a clamped coordinate never reaches a neighbour's pixels
        atlas = crops.permute(1, 2, 0, 3).reshape(1, 3, size, -1)
        grid = torch.stack([(owner * size + u) / (atlas.shape[-1] - 1) * 2 - 1,
                            v / (size - 1) * 2 - 1], dim=-1)
        sampled = F.grid_sample(atlas, grid[None].float(), align_corners=True,
                                mode="nearest" if pixelate else "bilinear")
        return torch.where(covered[..., None], to_uint8(sampled, 1)[0], image)

    @staticmethod
    def _pixelate(region: torch.Tensor, blocks: int) -> torch.Tensor:
        h, w = region.shape[-2:]
        size = (max(1, round(blocks * h / w)), blocks)
        return F.interpolate(F.interpolate(region, size=size, mode="area"), size=(h, w),
                             mode="nearest")


#: no boxes, and the direction each side of a box grows in
_NO_BOXES = torch.zeros(0, 4)
_OUTWARD = torch.tensor([-1.0, -1.0, 1.0, 1.0])
#: blur: samples across a crop per block (the Gaussian's sigma in the crop)
_BLUR_SAMPLES = 4


def _gaussian(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of ``[N, 3, H, W]`` with its edges repeated."""
    h, w = images.shape[-2:]
    radius = min(int(3 * sigma), max(1, min(h, w) - 1))
    taps = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(3, 1, 1, 1)  # one per channel
    out = F.pad(images, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.reshape(3, 1, 1, -1), groups=3)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.reshape(3, 1, -1, 1), groups=3)


def _integral(image: torch.Tensor) -> torch.Tensor:
    """``[H + 1, W + 1, 3]`` sums of ``image`` above and left of each corner (int64:
    exact at any size)."""
    table = image.long().cumsum(0).cumsum(1)
    return F.pad(table, (0, 0, 1, 0, 1, 0))


def _cells(start: torch.Tensor, end: torch.Tensor, size: int) -> torch.Tensor:
    """First and past-the-end pixel of each of ``size`` cells across each span, as
    adaptive pooling divides them: ``[2, N, size]``."""
    steps = torch.arange(size + 1, device=start.device)
    span = (end - start)[:, None]
    first = start[:, None] + steps[:-1] * span // size
    after = start[:, None] - (-(steps[1:] * span) // size)
    return torch.stack([first, after])


def _within(pixels: torch.Tensor, start: torch.Tensor, end: torch.Tensor, size: int,
            pixelate: bool) -> torch.Tensor:
    """Each pixel's coordinate in its region's crop of ``size`` samples: its cell
    (pixelate), or its centre between samples (blur), kept inside the crop."""
    span = (end - start).clamp(min=1)
    if pixelate:
        return ((pixels - start) * size // span).clamp(0, size - 1).float()
    return ((pixels - start + 0.5) * size / span - 0.5).clamp(0, size - 1)


def _grown(boxes: torch.Tensor, share: float) -> torch.Tensor:
    """``boxes`` ``[N, 4]`` grown by ``share`` of their width and height on every side."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + share * size * _OUTWARD.to(boxes.device)
