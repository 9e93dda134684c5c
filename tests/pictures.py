"""Pictures the tests (and benchmarks) share."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from pipeline.core.frame import Detections


def crowd() -> tuple[np.ndarray, Detections]:
    """A 1080p frame of 12 copies of scikit-image's astronaut's face, 160 to 320 px wide
    (areas over float16's 65,504 px²), and boxes and landmarks roughly on them."""
    from skimage import data

    canvas = np.full((1080, 1920, 3), 118, np.uint8)
    photo = data.astronaut()[40:296, 120:376]
    boxes = []
    for k in range(12):
        side = (160, 240, 320)[k % 3]
        y, x = (k // 6) * 540 + 20, (k % 6) * 320
        canvas[y:y + side, x:x + side] = cv2.resize(photo, (side, side))
        boxes.append([x + side * 0.25, y + side * 0.1, x + side * 0.75, y + side * 0.75])
    box = torch.tensor(boxes)
    centre = (box[:, :2] + box[:, 2:]) / 2
    marks = centre[:, None, :].repeat(1, 5, 1) + torch.tensor(
        [[-15.0, -10], [15, -10], [0, 0], [-12, 15], [12, 15]])
    return canvas, Detections(box, torch.full((12,), 0.99), marks)
