"""What flows along the video edges of a graph: :class:`Frame` and its :class:`Detections`.

Time: ``pts`` is an integer count of ``time_base`` units (a ``Fraction`` of a second), taken
from the demuxer and never rewritten, so audio stays in sync and a dropped frame leaves a gap.
``captured`` is ``time.monotonic()`` seconds when the source produced the frame.

Everything here is immutable and pickles, so frames can cross a process boundary: ``meta``
is a :class:`FrozenDict`, and a frame that still holds a decoder's picture is pickled as
its RGB tensor. Two frames compare equal when their fields and pixels are equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import torch


class FrozenDict(Mapping[str, Any]):
    """A read-only mapping that pickles (``types.MappingProxyType`` does not)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and same(dict(self), dict(other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrozenDict({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return FrozenDict, (self._data,)


EMPTY = FrozenDict()


def same(a: Any, b: Any) -> bool:
    """Value equality that also holds for tensors (same dtype, shape and values) and for
    containers of them, where ``==`` on tensors would be ambiguous."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and a.shape == b.shape
                and torch.equal(a.cpu(), b.cpu()))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b, strict=True)))
    return bool(a == b)


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes found in one frame.

    ``boxes``: float ``[K, 4]`` x1, y1, x2, y2 in pixels; ``scores``: ``[K]``;
    ``landmarks``: ``[K, 5, 2]`` (x, y) or None; ``labels``/``label_scores``: one per box or
    None. ``extra`` holds per-box fields that only some plugins fill, each a tensor with K
    rows or a tuple of K items, documented by the plugin that writes it (``face_crops``:
    ``crops``, ``classify``: ``topk``).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor | None = None
    labels: tuple[str, ...] | None = None
    label_scores: torch.Tensor | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)

    def __post_init__(self) -> None:
        k = self.boxes.shape[0]
        if self.boxes.shape != (k, 4) or self.scores.shape != (k,):
            raise ValueError(f"Detections: boxes {tuple(self.boxes.shape)} and scores "
                             f"{tuple(self.scores.shape)} must be [K, 4] and [K]")
        if self.landmarks is not None and self.landmarks.shape != (k, 5, 2):
            raise ValueError(f"Detections: landmarks must be [{k}, 5, 2]")
        if self.labels is not None and len(self.labels) != k:
            raise ValueError(f"Detections: {len(self.labels)} labels for {k} boxes")
        if not isinstance(self.extra, FrozenDict):
            object.__setattr__(self, "extra", FrozenDict(self.extra))
        for name, value in self.extra.items():
            if len(value) != k:
                raise ValueError(f"Detections: extra field '{name}' has {len(value)} rows "
                                 f"for {k} boxes")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        return all(same(getattr(self, f.name), getattr(other, f.name))
                   for f in dataclasses.fields(self))

    __hash__ = None  # type: ignore[assignment]

    def with_extra(self, **values: Any) -> Detections:
        """A copy with per-box ``extra`` fields added (or replaced)."""
        return dataclasses.replace(self, extra={**self.extra, **values})

    def to(self, device: torch.device | str) -> Detections:
        """The same detections with every tensor on ``device``."""

        def move(value: Any) -> Any:
            return value.to(device) if isinstance(value, torch.Tensor) else value

        return dataclasses.replace(
            self, boxes=move(self.boxes), scores=move(self.scores),
            landmarks=move(self.landmarks), label_scores=move(self.label_scores),
            extra={k: move(v) for k, v in self.extra.items()})

    def to_json(self) -> list[dict[str, Any]]:
        """Plain lists and floats, one dict per box (the ``jsonl_sink`` format). Extra fields
        go in too when they hold one plain value per box (not face chips)."""
        boxes = self.boxes.detach().cpu().tolist()
        scores = self.scores.detach().cpu().tolist()
        marks = self.landmarks.detach().cpu().tolist() if self.landmarks is not None else None
        lscores = (self.label_scores.detach().cpu().tolist()
                   if self.label_scores is not None else None)
        extras = {name: _per_box_json(value) for name, value in self.extra.items()}
        return [
            {
                "box": [round(v, 2) for v in boxes[i]],
                "score": round(scores[i], 4),
                "landmarks": ([[round(x, 2), round(y, 2)] for x, y in marks[i]]
                              if marks is not None else None),
                "label": self.labels[i] if self.labels is not None else None,
                "label_score": round(lscores[i], 4) if lscores is not None else None,
                **{name: values[i] for name, values in extras.items() if values is not None},
            }
            for i in range(len(boxes))
        ]


def _per_box_json(value: Any) -> list[Any] | None:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist() if value.ndim == 1 else None
    return list(value)


class Picture(Protocol):
    """A decoder's own picture, held by a frame until a node reads its pixels."""

    @property
    def width(self) -> int:
        """Width in pixels."""
        ...

    @property
    def height(self) -> int:
        """Height in pixels."""
        ...

    def to_image(self) -> torch.Tensor:
        """The picture as ``uint8 [H, W, 3]`` RGB in host memory."""
        ...

    def scaled(self, width: int, height: int, interpolation: str) -> Picture:
        """The picture scaled by the decoder library's own scaler, without a detour
        through RGB (``interpolation``: nearest, bilinear, bicubic or area)."""
        ...

    def to_device(self, device: torch.device) -> torch.Tensor:
        """The picture as ``uint8 [H, W, 3]`` RGB on ``device``, converted there where the
        picture's layout allows it (fewer bytes cross to a GPU)."""
        ...


@dataclass(frozen=True, eq=False)
class Frame:
    """One video frame, immutable; a stage returns ``frame.replace(...)``.

    ``image`` is a ``torch.uint8`` tensor ``[H, W, 3]``, RGB, on some device. A source that
    decodes video may hand over the decoder's own picture (``native``, a :class:`Picture`)
    instead: ``image`` then converts it to RGB on first access, and a graph whose stages
    never read pixels (a transcode) encodes the decoded picture without converting it.
    ``ready`` is the CUDA event after which a GPU-made ``image`` may be read (None for
    pixels that are ready now); the runtime waits on it for the node that reads them.
    """

    pts: int | None
    time_base: Fraction
    stream: str = "0"
    index: int = 0
    captured: float = 0.0
    meta: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    _image: torch.Tensor | None = field(default=None, repr=False)
    native: Picture | None = field(default=None, repr=False)
    ready: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self._image is None and self.native is None:
            raise ValueError("Frame needs an image or a native decoded picture")
        if not isinstance(self.meta, FrozenDict):
            object.__setattr__(self, "meta", FrozenDict(self.meta))

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
            assert self.native is not None
            object.__setattr__(self, "_image", self.native.to_image())
        assert self._image is not None
        return self._image

    @property
    def has_pixels(self) -> bool:
        """Whether ``image`` is already a tensor (no conversion pending). The conversion
        is cached on the frame: a node that decides by the native picture tests
        ``native is not None``, which does not depend on other branches' reads."""
        return self._image is not None

    @property
    def width(self) -> int:
        """Width in pixels, known without converting the picture."""
        if self._image is not None:
            return int(self._image.shape[1])
        assert self.native is not None
        return int(self.native.width)

    @property
    def height(self) -> int:
        """Height in pixels, known without converting the picture."""
        if self._image is not None:
            return int(self._image.shape[0])
        assert self.native is not None
        return int(self.native.height)

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
        """A copy with some fields changed; a new ``image`` drops the native picture, a new
        ``native`` picture drops the pixels converted from the old one."""
        if image is not None:
            check_image(image)
            changes["_image"] = image
            changes["native"] = None
            changes.setdefault("ready", None)
        elif changes.get("native") is not None:
            changes["_image"] = None
        return dataclasses.replace(self, **changes)

    def with_meta(self, **values: Any) -> Frame:
        """A copy whose ``meta`` has ``values`` added (or replaced)."""
        return dataclasses.replace(self, meta={**self.meta, **values})

    def to(self, device: torch.device) -> Frame:
        """The frame with its pixels and detections on ``device`` (itself if already there).

        Copies are blocking: the result can be read at once, from any thread. A frame made
        on a GPU must be ready first (the runtime waits on ``ready`` before a node runs).
        """
        if self._image is None:
            if device.type == "cpu":
                return self
            assert self.native is not None
            moved = self.native.to_device(device)
        else:
            moved = self._image if self._image.device == device else self._image.to(device)
        dets = self.detections
        meta = self.meta
        if dets is not None and dets.boxes.device != device:
            meta = {**meta, "detections": dets.to(device)}
        if moved is self._image and meta is self.meta:
            return self
        ready = self.ready if moved is self._image else None
        return dataclasses.replace(self, _image=moved, native=None, meta=meta, ready=ready)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (self.pts == other.pts and self.time_base == other.time_base
                and self.stream == other.stream and self.index == other.index
                and self.captured == other.captured and same(self.meta, other.meta)
                and same(self.image, other.image))

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # The decoder's picture and a CUDA event belong to this process: send the pixels.
        if self.ready is not None:
            self.ready.synchronize()
        return _rebuild_frame, (self.pts, self.time_base, self.stream, self.index,
                                self.captured, dict(self.meta), self.image)


def _rebuild_frame(pts: int | None, time_base: Fraction, stream: str, index: int,
                   captured: float, meta: dict[str, Any], image: torch.Tensor) -> Frame:
    return Frame(pts, time_base, stream, index, captured, meta, _image=image)


def check_image(image: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``image`` is ``uint8 [H, W, 3]``."""
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"a frame image must be uint8 [H, W, 3] RGB, got {image.dtype} {tuple(image.shape)}"
        )
