"""``draw``: overlay detections (boxes, scores, landmarks, labels) on the picture."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from pipeline.core.device import compiled_loops
from pipeline.core.frame import Detections, Frame
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
    to 4K. Frames without detections pass through untouched. On a GPU the frame stays
    there: only the overlay's pixels are sent to it.

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
        marks = self._marks(dets, label)
        image = frame.image
        if compiled_loops(image):
            picture = image.numpy().copy()  # the frame's own pixels stay as they are
            _paint(picture, marks, _Style((frame.height, frame.width)))
            return frame.replace(image=torch.from_numpy(picture))
        return frame.replace(image=_overlay(image, marks))

    def _marks(self, dets: Detections | None, label: Any) -> list[_Mark]:
        """What to draw, in order, in host numbers: every field the overlay needs crosses
        from the device in one transfer."""
        p = self.params
        marks: list[_Mark] = []
        if dets is not None and len(dets):
            # a labelled box shows how sure its label is, else how sure the detection is
            shown = dets.label_scores if dets.label_scores is not None else dets.scores
            predicted = dets.extra.get("predicted")
            columns = [dets.boxes.reshape(-1, 4), shown.reshape(-1, 1)]
            if predicted is not None:
                columns.append(torch.as_tensor(predicted, device=dets.boxes.device)
                               .reshape(-1, 1))
            if p.landmarks and dets.landmarks is not None:
                columns.append(dets.landmarks.reshape(len(dets), -1))
            table = torch.cat([c.to(torch.float64) for c in columns], dim=1).cpu().numpy()
            ids = dets.extra.get("track_id") if p.track_ids else None
            for k, row in enumerate(table):
                colour = p.color
                text = []
                if ids is not None and ids[k] is not None:
                    colour = _TRACK_COLOURS[int(ids[k]) % len(_TRACK_COLOURS)]
                    text.append(f"#{ids[k]}")
                if p.labels and dets.labels is not None:
                    text.append(dets.labels[k])
                if p.scores:
                    text.append(f"{row[4]:.2f}")
                guessed = predicted is not None and bool(row[5])
                marks.append(_Mark("box", tuple(int(v) for v in np.round(row[:4])), colour,
                                   " ".join(text), thin=guessed))
            if p.landmarks and dets.landmarks is not None:
                first = 6 if predicted is not None else 5
                for row in table:
                    points = row[first:].reshape(-1, 2).round().astype(int).tolist()
                    marks.extend(_Mark("point", (x, y), colour)
                                 for (x, y), colour in zip(points, _POINT_COLOURS, strict=False))
        if label is not None:
            marks.append(_Mark("label", (0, 0), (255, 255, 255), str(label)))
        return marks


@dataclass(frozen=True)
class _Mark:
    """One thing to draw: a box (with its text), a landmark or the frame's label."""

    kind: Literal["box", "point", "label"]
    where: tuple[int, ...]
    colour: tuple[int, int, int]
    text: str = ""
    thin: bool = False


class _Style:
    """Line width and text scale for a picture of ``size`` (height, width): they grow with
    it, so the overlay stays readable from 240p to 4K."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        unit = max(1.0, min(size) / 360)  # 1 at 360p, 3 at 1080p
        self.thick = max(1, round(unit))
        self.font = 0.45 * unit

    def band(self, mark: _Mark) -> tuple[int, int, int, int, int] | None:
        """Where ``mark``'s text goes in the picture: its band's left, top, and the text's
        width, height and baseline. The band lies above the box (below the corner, for the
        frame's label), kept inside the picture. None without text."""
        if not mark.text:
            return None
        below = mark.kind == "label"
        (w, h), base = cv2.getTextSize(mark.text, cv2.FONT_HERSHEY_SIMPLEX, self.scale(mark),
                                       self.thick)
        height, width = self.size
        x = min(max(mark.where[0], 0), max(0, width - w - 4))
        top = mark.where[1] if below else mark.where[1] - h - base - 4
        top = min(max(top, 0), max(0, height - h - base - 4))
        return x, top, w, h, base

    def scale(self, mark: _Mark) -> float:
        """Text scale of ``mark``: the frame's label is larger."""
        return self.font * 1.3 if mark.kind == "label" else self.font

    def extent(self, marks: list[_Mark]) -> tuple[int, int, int, int]:
        """The part of the picture ``marks`` paint (left, top, right, bottom; the last two
        exclusive), with a margin for line widths and anti-aliasing."""
        margin = self.thick + 2
        xs, ys = [], []
        for mark in marks:
            if mark.kind != "label":  # a box's corners or a point
                xs += mark.where[0::2]
                ys += mark.where[1::2]
            band = self.band(mark)
            if band is not None:
                x, top, w, h, base = band
                xs += [x, x + w + 4]
                ys += [top, top + h + base + 4]
        height, width = self.size
        left, top = (min(limit, max(0, min(vs) - margin))
                     for vs, limit in ((xs, width), (ys, height)))
        right, bottom = (max(low, min(limit, max(vs) + margin + 1))
                         for vs, limit, low in ((xs, width, left), (ys, height, top)))
        return left, top, right, bottom


def _paint(canvas: np.ndarray, marks: list[_Mark], style: _Style,
           colour: tuple[int, int, int] | None = None, origin: tuple[int, int] = (0, 0)) -> None:
    """Draw ``marks`` with OpenCV, each in its colour or all in ``colour``, on ``canvas``:
    the picture ``style`` is for, one plane of it, or the part of either from ``origin``
    (x, y) on."""
    ox, oy = origin
    thick = style.thick
    for mark in marks:
        ink = colour or mark.colour
        if mark.kind == "box":
            x1, y1, x2, y2 = mark.where
            cv2.rectangle(canvas, (x1 - ox, y1 - oy), (x2 - ox, y2 - oy), ink,
                          1 if mark.thin else thick)
        elif mark.kind == "point":
            cv2.circle(canvas, (mark.where[0] - ox, mark.where[1] - oy), thick + 1, ink, -1,
                       cv2.LINE_AA)
        band = style.band(mark)
        if band is not None:
            x, top, w, h, base = band
            x, top = x - ox, top - oy
            # a dark band, or an opaque one on the coverage plane (one colour for all)
            cv2.rectangle(canvas, (x, top), (x + w + 4, top + h + base + 4),
                          colour or (0, 0, 0), -1)
            cv2.putText(canvas, mark.text, (x + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX,
                        style.scale(mark), ink, thick, cv2.LINE_AA)


def _overlay(image: torch.Tensor, marks: list[_Mark]) -> torch.Tensor:
    """``image`` with ``marks`` drawn over it where it lies (a GPU): OpenCV paints them on
    the host into a colour and a coverage layer the size of the part they cover
    (premultiplied, so anti-aliased edges and marks over marks compose as they do on a
    picture), and only the painted pixels travel, to be blended in one pass."""
    height, width = image.shape[:2]
    style = _Style((height, width))
    left, top, right, bottom = style.extent(marks)
    part = (bottom - top, right - left)
    colour = np.zeros((*part, 3), np.uint8)
    cover = np.zeros(part, np.uint8)
    _paint(colour, marks, style, origin=(left, top))
    _paint(cover, marks, style, colour=(255, 255, 255), origin=(left, top))
    ys, xs = np.nonzero(cover)
    where = (ys + top) * width + (xs + left)
    layer = np.concatenate([colour[ys, xs], cover[ys, xs, None]], 1)
    index = torch.from_numpy(where).to(image.device)
    layer_t = torch.from_numpy(layer).to(image.device).float()
    out = image.clone()
    pixels = out.view(-1, 3)
    blended = pixels[index].float() * (1 - layer_t[:, 3:] / 255) + layer_t[:, :3]
    pixels[index] = blended.round_().clamp_(0, 255).to(torch.uint8)
    return out
