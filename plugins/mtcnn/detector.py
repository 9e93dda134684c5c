"""The MTCNN cascade on batches of frames, in PyTorch on whatever device the frames are on.

P-Net runs over an image pyramid and proposes windows; R-Net and O-Net refine them on 24x24
and 48x48 crops, cut for all faces of all frames together (see :func:`crops`).
Boxes of every frame go through one NMS call per step, each frame's apart (see
:func:`~plugins.mtcnn.nms.batched_nms`). Box arithmetic is float32 whatever the nets run
in: in float16 a 1080p box's area overflows and its corners move by whole pixels. The
pixel conventions (whole-pixel crops, sizes counting both edge pixels) are the original
MTCNN's, so results match the reference implementations.
"""

from __future__ import annotations

import torch

from pipeline.core.device import compiled_loops, inference_dtype
from pipeline.core.frame import Detections

from .area import NET_OFFSET, AreaResize, crops, summed_area
from .model import ONet, PNet, RNet, load_nets
from .nms import batched_nms


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which a ``min_face`` face fills P-Net's 12x12 window, down to 12 px."""
    scale = 12.0 / min_face
    side = min(height, width) * scale
    scales = []
    while side >= 12:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square around each box's centre with the box's longer side."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def regress(boxes: torch.Tensor, offsets: torch.Tensor, *, inclusive: bool) -> torch.Tensor:
    """Apply the nets' box regression, offsets relative to width and height; ``inclusive``:
    sizes count both edge pixels (x2 - x1 + 1), the convention R-Net and O-Net were
    trained with (P-Net's boxes use x2 - x1)."""
    extra = 1.0 if inclusive else 0.0
    w, h = boxes[:, 2] - boxes[:, 0] + extra, boxes[:, 3] - boxes[:, 1] + extra
    return boxes + offsets * torch.stack([w, h, w, h], 1)


#: pixels of the frames that go through the cascade together on the CPU, one 1080p frame:
#: chunks of 4 to 8 frames of 640x480 ran 1.2-1.4x faster per frame than single frames
#: (fewer, bigger calls), 2 of 720p 1.1x; bigger chunks gained little with kept memory
#: (``pipeline.app.memory``) and, with glibc's default malloc, lost up to half of the speed to
#: page faults in their fresh, larger buffers
CPU_CHUNK_PIXELS = 1920 * 1080


class Detector:
    """MTCNN on batches of same-size frames: ``detect(images)`` for uint8 (N, H, W, 3) RGB.

    Frames go through each step of the cascade together, ``chunk`` at a time: on a GPU the
    whole batch, on the CPU as many as :data:`CPU_CHUNK_PIXELS` allows. Network inputs are
    channels-last, which doubles the speed of the CPU convolutions. Each frame is summed
    once into a summed-area table, from which every pyramid level and every R-Net and
    O-Net crop is read (see :class:`AreaResize` and :func:`crops`).
    """

    def __init__(self, device: torch.device, *, min_face: float = 20.0,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, nets: tuple[PNet, RNet, ONet] | None = None,
                 half: bool = False, chunk: int | None = None,
                 dtype: torch.dtype | None = None) -> None:
        self.device = device
        self.min_face = min_face
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        # dtype: the nets' arithmetic, where half's choice is not wanted (tests run the
        # GPU's float16 on the CPU)
        self.dtype = dtype or inference_dtype(device, half)
        pnet, rnet, onet = nets or load_nets()
        self.pnet = pnet.to(device, self.dtype)
        self.rnet = rnet.to(device, self.dtype)
        self.onet = onet.to(device, self.dtype)
        for net in (self.pnet, self.rnet, self.onet):
            # torch takes memory_format here; its type stubs do not know it
            net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.chunk = chunk
        self._levels: dict[tuple[int, int], list[tuple[float, AreaResize]]] = {}

    @torch.inference_mode()
    def detect(self, images: torch.Tensor) -> list[Detections]:
        """Faces in each of ``images`` (uint8 N, H, W, 3 RGB on this detector's device):
        boxes in pixels, scores, and five landmarks per face (left eye, right eye, nose,
        left and right mouth corner)."""
        step = self._chunk(images)
        return [found for first in range(0, len(images), step)
                for found in self._cascade(images[first:first + step])]

    def _chunk(self, images: torch.Tensor) -> int:
        if self.chunk is not None:
            return self.chunk
        if not compiled_loops(images):  # the tensor code: the whole batch at once
            return max(1, len(images))
        return max(1, CPU_CHUNK_PIXELS // (images.shape[1] * images.shape[2]))

    def _cascade(self, images: torch.Tensor) -> list[Detections]:
        n, height, width, _ = images.shape
        table = summed_area(images)
        boxes, scores, owner = self._propose(table, self._pyramid(height, width))
        boxes, scores, owner = self._refine(table, boxes, owner)
        boxes, scores, owner, marks = self._output(table, boxes, owner)
        limit = torch.tensor([width, height, width, height], device=boxes.device,
                             dtype=boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
        # grouped by frame, then split with one transfer of the counts (not a mask each)
        order = owner.argsort(stable=True)
        counts = torch.bincount(owner, minlength=n).tolist()
        return [Detections(b, s, m) for b, s, m in zip(
            boxes[order].float().split(counts), scores[order].float().split(counts),
            marks[order].float().split(counts), strict=True)]

    def _pyramid(self, height: int, width: int) -> list[tuple[float, AreaResize]]:
        """Each level's scale and resizing, worked out once per frame size; levels come out
        normalised for P-Net, (x - 127.5) / 128."""
        key = (height, width)
        if key not in self._levels:
            self._levels[key] = [
                (s, AreaResize.between((height, width), (int(height * s + 1),
                                                         int(width * s + 1)),
                                       self.device, scale=1 / 128, offset=NET_OFFSET))
                for s in pyramid_scales(height, width, self.min_face, self.scale_factor)]
        return self._levels[key]

    def _propose(self, table: torch.Tensor, pyramid: list[tuple[float, AreaResize]]
                 ) -> tuple[torch.Tensor, ...]:
        """P-Net's windows in the frames of ``table``: squared boxes, scores, and the frame
        each is in."""
        all_boxes, all_scores, all_owners = [], [], []
        for scale, resize in pyramid:
            level = resize(table).to(self.dtype)
            features = self.pnet.features(level)
            prob = self.pnet.face_probability(features).float()
            img, ys, xs = (prob >= self.thresholds[0]).nonzero(as_tuple=True)
            # the 12x12 window of each output cell, in MTCNN's whole-pixel convention
            origin = torch.stack([xs, ys], 1).float() * 2
            window = torch.cat([((origin + 1) / scale).floor(),
                                ((origin + 12) / scale).floor()], 1)
            found = torch.cat([window, self.pnet.box_at(features, img, ys, xs).float()], 1)
            scores = prob[img, ys, xs]
            keep = batched_nms(found[:, :4], scores, img, 0.5)  # within the scale, per frame
            all_boxes.append(found[keep])
            all_scores.append(scores[keep])
            all_owners.append(img[keep])
        cand, scores, owner = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_owners)
        keep = batched_nms(cand[:, :4], scores, owner, 0.7)  # across scales
        cand, scores, owner = cand[keep], scores[keep], owner[keep]
        return square(regress(cand[:, :4], cand[:, 4:], inclusive=False)), scores, owner

    def _refine(self, table: torch.Tensor, boxes: torch.Tensor,
                owner: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0), owner
        reg, prob = (t.float() for t in self.rnet(self._input(table, boxes, owner, 24)))
        hit = prob[:, 1] > self.thresholds[1]
        boxes, reg, scores, owner = boxes[hit], reg[hit], prob[hit, 1], owner[hit]
        keep = batched_nms(boxes, scores, owner, 0.7)
        boxes = regress(boxes[keep], reg[keep], inclusive=True)
        return square(boxes), scores[keep], owner[keep]

    def _output(self, table: torch.Tensor, boxes: torch.Tensor,
                owner: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0), owner, boxes.new_zeros((0, 5, 2))
        reg, marks, prob = (t.float() for t in self.onet(self._input(table, boxes, owner, 48)))
        hit = prob[:, 1] > self.thresholds[2]
        boxes, reg, marks, scores, owner = (boxes[hit], reg[hit], marks[hit], prob[hit, 1],
                                            owner[hit])
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = torch.stack([boxes[:, 0:1] - 1 + w * marks[:, :5],
                              boxes[:, 1:2] - 1 + h * marks[:, 5:]], -1)  # (K, 5, 2)
        boxes = regress(boxes, reg, inclusive=True)
        keep = batched_nms(boxes, scores, owner, 0.7, by_min=True)
        return boxes[keep], scores[keep], owner[keep], points[keep]

    def _input(self, table: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor,
               size: int) -> torch.Tensor:
        cut = crops(table, boxes, owner, size)
        return cut.to(self.dtype).contiguous(memory_format=torch.channels_last)
