"""``draw``: overlay detections (boxes, scores, landmarks, labels) on the picture."""

from __future__ import annotations

import cv2
import numpy as np
import torch
from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage

#: landmark colours (RGB): eyes, nose, mouth corners
_POINT_COLOURS = ((0, 160, 255), (0, 160, 255), (255, 200, 0), (255, 60, 60), (255, 60, 60))
#: box colours of tracked objects, by track id (RGB; Tableau's ten)
_TRACK_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                  (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


class DrawParams(Params):
    """Parameters of ``draw``."""

    color: tuple[int, int, int] = Field((0, 255, 0), description="box colour, RGB")
    scores: bool = Field(True, description="write each box's score (its label's, if labelled)")
    landmarks: bool = Field(True, description="mark the landmarks")
    labels: bool = Field(True, description="write labels (per box, and the frame's label)")
    track_ids: bool = Field(True, description="write each tracked box's id (#7) and colour "
                            "it by its id")


class Draw(Stage):
    """Draws what earlier nodes found: each box with its score and label, the landmarks,
    and the frame's own label in the corner. After a ``track`` node each box shows its id
    in a colour of its own; a predicted box (no detection in this frame) is drawn thin.
    Line widths and text scale with the picture, so the overlay stays readable from 240p
    to 4K. Frames without detections pass through untouched.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 0.2}
      faces: {plugin: mtcnn, input: src}
      view: {plugin: draw, input: faces}
      out: {plugin: null_sink, input: view}
    ```
    """

    name = "draw"
    summary = "overlay boxes, scores, landmarks and labels"
    Params = DrawParams
    params: DrawParams

    def process(self, frame: Frame) -> Frame:
        dets = frame.detections
        label = frame.meta.get("label") if self.params.labels else None
        if (dets is None or len(dets) == 0) and label is None:
            return frame
        image = np.ascontiguousarray(frame.image.cpu().numpy())
        unit = max(1.0, min(image.shape[:2]) / 360)  # 1 at 360p, 3 at 1080p
        thick = max(1, round(unit))
        font = 0.45 * unit
        p = self.params
        if dets is not None:
            boxes = dets.boxes.cpu().round().int().tolist()
            # a labelled box shows how sure its label is, else how sure the detection is
            shown = dets.label_scores if dets.label_scores is not None else dets.scores
            scores = shown.cpu().tolist()
            ids = dets.extra.get("track_id") if p.track_ids else None
            predicted = dets.extra.get("predicted")
            for k, (x1, y1, x2, y2) in enumerate(boxes):
                colour = p.color
                text = []
                if ids is not None and ids[k] is not None:
                    colour = _TRACK_COLOURS[int(ids[k]) % len(_TRACK_COLOURS)]
                    text.append(f"#{ids[k]}")
                guessed = predicted is not None and bool(predicted[k])
                cv2.rectangle(image, (x1, y1), (x2, y2), colour, 1 if guessed else thick)
                if p.labels and dets.labels is not None:
                    text.append(dets.labels[k])
                if p.scores:
                    text.append(f"{scores[k]:.2f}")
                if text:
                    _text(image, " ".join(text), (x1, y1), font, thick, colour)
            if p.landmarks and dets.landmarks is not None:
                for points in dets.landmarks.cpu().round().int().tolist():
                    for (x, y), colour in zip(points, _POINT_COLOURS, strict=False):
                        cv2.circle(image, (x, y), thick + 1, colour, -1, cv2.LINE_AA)
        if label is not None:
            _text(image, str(label), (0, 0), font * 1.3, thick, (255, 255, 255), below=True)
        return frame.replace(image=torch.from_numpy(image).to(self.device))


def _text(image: np.ndarray, text: str, corner: tuple[int, int], scale: float, thick: int,
          colour: tuple[int, int, int], below: bool = False) -> None:
    """Text on a dark band above (or below) ``corner``, kept inside the picture."""
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = min(max(corner[0], 0), max(0, image.shape[1] - w - 4))
    top = corner[1] if below else corner[1] - h - base - 4
    top = min(max(top, 0), max(0, image.shape[0] - h - base - 4))
    cv2.rectangle(image, (x, top), (x + w + 4, top + h + base + 4), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, colour,
                thick, cv2.LINE_AA)
