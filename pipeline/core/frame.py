"""What flows along the edges of a graph: :class:`Frame`, :class:`Detections`, audio packets.

Time: ``pts`` is an integer count of ``time_base`` units (a ``Fraction`` of a second), taken
from the demuxer and never rewritten, so audio stays in sync and a dropped frame leaves a gap.
``captured`` is ``time.monotonic()`` seconds when the source produced the frame.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame.

    ``boxes``: float ``[K, 4]`` x1, y1, x2, y2 in pixels; ``scores``: ``[K]``;
    ``landmarks``: ``[K, 5, 2]`` (x, y) or None; ``labels``/``label_scores``: one per box or None;
    ``crops``: ``uint8 [K, S, S, C]`` aligned face chips (see ``face_crops``) or None;
    ``topk``: per box, the best classes with their probabilities (see ``classify``) or None.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor | None = None
    labels: tuple[str, ...] | None = None
    label_scores: torch.Tensor | None = None
    crops: torch.Tensor | None = None
    topk: tuple[dict[str, float], ...] | None = None

    def __post_init__(self) -> None:
        k = self.boxes.shape[0]
        if self.boxes.shape != (k, 4) or self.scores.shape != (k,):
            raise ValueError(f"Detections: boxes {tuple(self.boxes.shape)} and scores "
                             f"{tuple(self.scores.shape)} must be [K, 4] and [K]")
        if self.landmarks is not None and self.landmarks.shape != (k, 5, 2):
            raise ValueError(f"Detections: landmarks must be [{k}, 5, 2]")
        if self.labels is not None and len(self.labels) != k:
            raise ValueError(f"Detections: {len(self.labels)} labels for {k} boxes")
        if self.crops is not None and (self.crops.ndim != 4 or self.crops.shape[0] != k):
            raise ValueError(f"Detections: crops must be [{k}, S, S, C]")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def to(self, device: torch.device | str) -> Detections:
        """The same detections with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return dataclasses.replace(
            self,
            boxes=self.boxes.to(device, non_blocking=True),
            scores=self.scores.to(device, non_blocking=True),
            landmarks=move(self.landmarks),
            label_scores=move(self.label_scores),
            crops=move(self.crops),
        )

    def to_json(self) -> list[dict[str, Any]]:
        """Plain lists and floats, one dict per box (the ``jsonl_sink`` format)."""
        boxes = self.boxes.detach().cpu().tolist()
        scores = self.scores.detach().cpu().tolist()
        marks = self.landmarks.detach().cpu().tolist() if self.landmarks is not None else None
        lscores = (self.label_scores.detach().cpu().tolist()
                   if self.label_scores is not None else None)
        return [
            {
                "box": [round(v, 2) for v in boxes[i]],
                "score": round(scores[i], 4),
                "landmarks": ([[round(x, 2), round(y, 2)] for x, y in marks[i]]
                              if marks is not None else None),
                "label": self.labels[i] if self.labels is not None else None,
                "label_score": round(lscores[i], 4) if lscores is not None else None,
                **({"topk": self.topk[i]} if self.topk is not None else {}),
            }
            for i in range(len(boxes))
        ]


@dataclass(frozen=True, eq=False)
class Frame:
    """One video frame, immutable; a stage returns ``frame.replace(...)``.

    ``image`` is a ``torch.uint8`` tensor ``[H, W, 3]``, RGB, on some device. A source that
    decodes video may hand over the decoder's own picture (``native``) instead: ``image`` then
    converts it to RGB on first access, and a graph whose stages never read pixels (a
    transcode) encodes the decoded picture without converting it at all.
    """

    pts: int | None
    time_base: Fraction
    stream: str = "0"
    index: int = 0
    captured: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    _image: torch.Tensor | None = field(default=None, repr=False)
    native: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._image is None and self.native is None:
            raise ValueError("Frame needs an image or a native decoded picture")
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", MappingProxyType(dict(self.meta)))

    @classmethod
    def from_image(cls, image: torch.Tensor | np.ndarray, **fields: Any) -> Frame:
        """A frame from an ``[H, W, 3]`` uint8 RGB tensor or array (not copied)."""
        tensor = torch.from_numpy(image) if isinstance(image, np.ndarray) else image
        check_image(tensor)
        fields.setdefault("pts", None)
        fields.setdefault("time_base", Fraction(1, 1))
        return cls(_image=tensor, **fields)

    @property
    def image(self) -> torch.Tensor:
        """The picture as ``uint8 [H, W, 3]`` RGB; converted once from ``native`` if needed."""
        if self._image is None:
            rgb = self.native.to_ndarray(format="rgb24")
            object.__setattr__(self, "_image", torch.from_numpy(rgb))
        assert self._image is not None
        return self._image

    @property
    def has_pixels(self) -> bool:
        """Whether ``image`` is already a tensor (no conversion pending)."""
        return self._image is not None

    @property
    def width(self) -> int:
        """Width in pixels, known without converting the picture."""
        return int(self._image.shape[1]) if self._image is not None else int(self.native.width)

    @property
    def height(self) -> int:
        """Height in pixels, known without converting the picture."""
        return int(self._image.shape[0]) if self._image is not None else int(self.native.height)

    @property
    def device(self) -> torch.device:
        """Where the pixels are (decoded pictures are in host memory)."""
        return self._image.device if self._image is not None else torch.device("cpu")

    @property
    def time(self) -> float | None:
        """``pts`` in seconds, or None when the source gave no timestamp."""
        return None if self.pts is None else float(self.pts * self.time_base)

    @property
    def detections(self) -> Detections | None:
        """``meta['detections']`` when a stage put some there."""
        return self.meta.get("detections")

    def replace(self, *, image: torch.Tensor | None = None, **changes: Any) -> Frame:
        """A copy with some fields changed; a new ``image`` drops the native picture."""
        if image is not None:
            check_image(image)
            changes["_image"] = image
            changes["native"] = None
        return dataclasses.replace(self, **changes)

    def with_meta(self, **values: Any) -> Frame:
        """A copy whose ``meta`` has ``values`` added (or replaced)."""
        return dataclasses.replace(self, meta={**self.meta, **values})

    def to(self, device: torch.device) -> Frame:
        """The frame with its pixels and detections on ``device`` (itself if already there)."""
        if self._image is None and device.type == "cpu":
            return self
        image = self.image
        if image.device == device:
            moved = image
        elif image.device.type == "cpu" and device.type == "cuda":
            moved = image.pin_memory().to(device, non_blocking=True)
        else:
            moved = image.to(device, non_blocking=True)
        dets = self.detections
        meta = self.meta
        if dets is not None and dets.boxes.device != device:
            meta = {**meta, "detections": dets.to(device)}
        if moved is image and meta is self.meta:
            return self
        return dataclasses.replace(self, _image=moved, native=None, meta=meta)


def check_image(image: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is ``uint8 [H, W, 3]``."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"a frame image must be uint8 [H, W, 3] RGB, got {image.dtype} {tuple(image.shape)}"
        )


@dataclass(frozen=True, eq=False)
class AudioPacket:
    """One compressed audio packet, passed through unchanged (audio is never decoded).

    ``packet`` is the demuxer's ``av.Packet`` and ``template`` its input stream, from which a
    sink creates an output stream with the same codec parameters.
    """

    packet: Any
    template: Any
    stream: str = "0"

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, or None."""
        p = self.packet
        return None if p.pts is None else float(p.pts * p.time_base)
