"""The MTCNN cascade on batches of frames, in PyTorch on whatever device the frames are on.

P-Net runs over an image pyramid (one call per scale for the whole batch) and proposes
windows; R-Net and O-Net refine them on 24x24 and 48x48 crops cut for all faces of a frame
in one resampling call. Boxes of every frame and scale go through one NMS call per step,
kept apart by offsetting each group's coordinates (so they can never overlap).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.frame import Detections

from .model import ONet, PNet, RNet, load_nets

#: value of a black pixel after MTCNN's normalisation: what crops see outside the image
_BLACK = -127.5 / 128


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


def box_iou(a: torch.Tensor, b: torch.Tensor, *, by_min: bool = False) -> torch.Tensor:
    """IoU matrix of boxes (x1 y1 x2 y2); ``by_min``: intersection over the smaller box."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    if by_min:
        return inter / torch.minimum(area_a[:, None], area_b[None, :]).clamp(min=1e-9)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                threshold: float, *, by_min: bool = False) -> torch.Tensor:
    """Indices kept by greedy NMS within each group, best first.

    Greedy NMS as a fixed point (Cluster-NMS, Zheng et al. 2020): a box survives when no
    surviving better box overlaps it; iterating from "all survive" reaches exactly the
    greedy result, with matrix operations instead of a Python loop over boxes.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    b = boxes[order]
    shift = (b.max() + 1) * groups[order].to(b.dtype)
    iou = box_iou(b + shift[:, None], b + shift[:, None], by_min=by_min).triu(diagonal=1)
    keep = torch.ones(len(b), dtype=torch.bool, device=b.device)
    for _ in range(len(b)):
        new = (iou * keep[:, None]).amax(0) <= threshold
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def square(boxes: torch.Tensor) -> torch.Tensor:
    """The square around each box's centre with the box's longer side."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    cx, cy = boxes[:, 0] + w / 2, boxes[:, 1] + h / 2
    return torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


def regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply the nets' box regression (offsets relative to width and height)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * torch.stack([w, h, w, h], 1)


def crops(images: torch.Tensor, boxes: torch.Tensor, owner: torch.Tensor,
          size: int) -> torch.Tensor:
    """``size`` x ``size`` bilinear crops of ``boxes`` (pixels) from normalised ``images``
    (N, 3, H, W); ``owner`` says whose box each is. One grid_sample call per frame."""
    n, _, height, width = images.shape
    out = images.new_empty((len(boxes), 3, size, size))
    steps = (torch.arange(size, device=images.device, dtype=images.dtype) + 0.5) / size
    for i in range(n):
        mine = (owner == i).nonzero().flatten()
        if mine.numel() == 0:
            continue
        b = boxes[mine]
        xs = b[:, 0:1] + steps[None] * (b[:, 2:3] - b[:, 0:1])  # (K, size) pixel coords
        ys = b[:, 1:2] + steps[None] * (b[:, 3:4] - b[:, 1:2])
        gx = (xs / width) * 2 - 1
        gy = (ys / height) * 2 - 1
        grid = torch.stack([gx[:, None, :].expand(-1, size, -1),
                            gy[:, :, None].expand(-1, -1, size)], -1)  # (K, size, size, 2)
        tall = grid.reshape(1, -1, size, 2)  # every crop stacked: one call
        cut = F.grid_sample(images[i:i + 1] - _BLACK, tall, mode="bilinear",
                            padding_mode="zeros", align_corners=False) + _BLACK
        out[mine] = cut.reshape(3, len(mine), size, size).transpose(0, 1)
    return out


class Detector:
    """MTCNN on batches of same-size frames: ``detect(images)`` for uint8 (N, H, W, 3) RGB."""

    def __init__(self, device: torch.device, *, min_face: float = 20.0,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, nets: tuple[PNet, RNet, ONet] | None = None,
                 half: bool = False) -> None:
        self.device = device
        self.min_face = min_face
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        self.dtype = torch.float16 if half and device.type == "cuda" else torch.float32
        pnet, rnet, onet = nets or load_nets()
        self.pnet = pnet.to(device, self.dtype)
        self.rnet = rnet.to(device, self.dtype)
        self.onet = onet.to(device, self.dtype)
        self._scales: dict[tuple[int, int], list[float]] = {}

    @torch.inference_mode()
    def detect(self, images: torch.Tensor) -> list[Detections]:
        """Faces in each of ``images`` (uint8 N, H, W, 3 RGB on this detector's device):
        boxes in pixels, scores, and five landmarks per face (left eye, right eye, nose,
        left and right mouth corner)."""
        n, height, width, _ = images.shape
        x = (images.permute(0, 3, 1, 2).to(self.dtype) - 127.5) / 128
        boxes, scores, owner = self._propose(x)
        boxes, scores, owner = self._refine(x, boxes, owner)
        boxes, scores, owner, marks = self._output(x, boxes, owner)
        limit = torch.tensor([width, height, width, height], device=boxes.device,
                             dtype=boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), limit)
        return [Detections(boxes[owner == i].float(), scores[owner == i].float(),
                           marks[owner == i].float()) for i in range(n)]

    def _propose(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        height, width = x.shape[-2:]
        key = (height, width)
        if key not in self._scales:
            self._scales[key] = pyramid_scales(height, width, self.min_face, self.scale_factor)
        all_boxes, all_scores, all_owners = [], [], []
        for scale in self._scales[key]:
            size = (math.ceil(height * scale), math.ceil(width * scale))
            reg, prob = self.pnet(F.interpolate(x, size=size, mode="area"))
            hit = prob[:, 1] > self.thresholds[0]
            img, ys, xs = hit.nonzero(as_tuple=True)
            origin = torch.stack([xs, ys, xs, ys], 1).to(x.dtype) * 2
            window = origin + torch.tensor([1, 1, 12, 12], device=x.device, dtype=x.dtype)
            found = torch.cat([window / scale, reg[img, :, ys, xs]], 1)
            scores = prob[img, 1, ys, xs]
            keep = batched_nms(found[:, :4], scores, img, 0.5)  # within the scale, per frame
            all_boxes.append(found[keep])
            all_scores.append(scores[keep])
            all_owners.append(img[keep])
        cand = torch.cat(all_boxes)
        scores = torch.cat(all_scores)
        owner = torch.cat(all_owners)
        keep = batched_nms(cand[:, :4], scores, owner, 0.7)  # across scales
        cand, scores, owner = cand[keep], scores[keep], owner[keep]
        return square(regress(cand[:, :4], cand[:, 4:])), scores, owner

    def _refine(self, x: torch.Tensor, boxes: torch.Tensor,
                owner: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0), owner
        reg, prob = self.rnet(crops(x, boxes, owner, 24))
        hit = prob[:, 1] > self.thresholds[1]
        boxes, reg, scores, owner = boxes[hit], reg[hit], prob[hit, 1], owner[hit]
        keep = batched_nms(boxes, scores, owner, 0.7)
        return square(regress(boxes[keep], reg[keep])), scores[keep], owner[keep]

    def _output(self, x: torch.Tensor, boxes: torch.Tensor,
                owner: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if len(boxes) == 0:
            return boxes, boxes.new_zeros(0), owner, boxes.new_zeros((0, 5, 2))
        reg, marks, prob = self.onet(crops(x, boxes, owner, 48))
        hit = prob[:, 1] > self.thresholds[2]
        boxes, reg, marks, scores, owner = (boxes[hit], reg[hit], marks[hit], prob[hit, 1],
                                            owner[hit])
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        points = torch.stack([boxes[:, 0:1] + w * marks[:, :5],
                              boxes[:, 1:2] + h * marks[:, 5:]], -1)  # (K, 5, 2)
        boxes = regress(boxes, reg)
        keep = batched_nms(boxes, scores, owner, 0.7, by_min=True)
        return boxes[keep], scores[keep], owner[keep], points[keep]
