"""Non-maximum suppression of boxes in groups (one per frame), greedy: a box is kept when
no kept box of its group with a better score overlaps it by more than the threshold.

On the CPU a compiled loop (numba) walks the boxes best first and stops at the first
overlap; elsewhere the same result comes from matrix operations (:func:`cluster_nms`),
which suit a GPU. Both compute IoU in float32 in the same order, so they keep the same
boxes.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from pipeline.core.device import compiled_loops

#: fixed-point steps of :func:`cluster_nms` between two checks of convergence
FIXED_POINT_CHECK = 4


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
    """Indices kept by greedy NMS within each group, best first (``by_min``: overlap as
    intersection over the smaller box)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    if not compiled_loops(boxes):
        return order[cluster_nms(boxes[order], groups[order], threshold, by_min=by_min)]
    _, group = torch.unique(groups[order], return_inverse=True)  # 0, 1, ... per group
    keep = np.empty(len(order), np.bool_)
    _greedy_nms(boxes[order].float().numpy(), group.numpy(), np.float32(threshold), by_min,
                keep)
    return order[torch.from_numpy(keep)]


def cluster_nms(boxes: torch.Tensor, groups: torch.Tensor, threshold: float, *,
                by_min: bool = False) -> torch.Tensor:
    """Which of ``boxes`` (sorted best first) greedy NMS keeps, as a boolean mask, with
    matrix operations instead of a loop over boxes: greedy NMS as a fixed point
    (Cluster-NMS, Zheng et al. 2020). A box survives when no surviving better box
    overlaps it; iterating from "all survive" reaches exactly the greedy result. Boxes of
    different groups never suppress each other (a mask, not shifted coordinates, which
    lose precision and let a box reaching out of its frame touch another frame's)."""
    iou = box_iou(boxes, boxes, by_min=by_min).triu(diagonal=1)
    iou = iou.masked_fill(groups[:, None] != groups[None, :], 0)
    keep = torch.ones(len(boxes), dtype=torch.bool, device=boxes.device)
    for _ in range(0, len(boxes), FIXED_POINT_CHECK):
        before = keep
        # a fixed point stays put: steps past it cost a little, each check a host sync
        for _ in range(FIXED_POINT_CHECK):
            keep = (iou * keep[:, None]).amax(0) <= threshold
        if torch.equal(before, keep):
            break
    return keep


@numba.njit(cache=True, nogil=True)
def _greedy_nms(boxes: np.ndarray, group: np.ndarray, threshold: np.float32, by_min: bool,
                keep: np.ndarray) -> None:
    """Greedy NMS of ``boxes`` (K, 4) float32, sorted best first, in groups numbered 0, 1,
    ..., into the mask ``keep``: each box is compared with the boxes kept so far in its
    group only. The float32 arithmetic of :func:`box_iou`."""
    zero, tiny = np.float32(0), np.float32(1e-9)
    groups = group.max() + 1
    first = np.zeros(groups + 1, np.int64)  # where each group's kept boxes are listed
    for g in group:
        first[g + 1] += 1
    first = np.cumsum(first)
    kept = np.zeros(groups, np.int64)
    listed = np.empty(len(group), np.int64)
    for j in range(boxes.shape[0]):
        x1, y1, x2, y2 = boxes[j, 0], boxes[j, 1], boxes[j, 2], boxes[j, 3]
        area_j = max(x2 - x1, zero) * max(y2 - y1, zero)
        g = group[j]
        keep[j] = True
        for i in listed[first[g]:first[g] + kept[g]]:
            area_i = (max(boxes[i, 2] - boxes[i, 0], zero)
                      * max(boxes[i, 3] - boxes[i, 1], zero))
            inter = (max(min(boxes[i, 2], x2) - max(boxes[i, 0], x1), zero)
                     * max(min(boxes[i, 3], y2) - max(boxes[i, 1], y1), zero))
            union = min(area_i, area_j) if by_min else area_i + area_j - inter
            if inter / max(union, tiny) > threshold:
                keep[j] = False
                break
        if keep[j]:
            listed[first[g] + kept[g]] = j
            kept[g] += 1
