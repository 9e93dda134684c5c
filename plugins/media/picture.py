"""A decoded ``av.VideoFrame`` held by a :class:`~pipeline.core.frame.Frame` as its native
picture: converted to RGB only when a node reads the pixels, scaled by swscale, and
copied before an encoder gets it, since several sinks may hold the same one."""

from __future__ import annotations

from typing import Any

import av
import torch

_SWSCALE = {"nearest": "POINT", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "AREA"}


class DecodedPicture:
    """The :class:`~pipeline.core.frame.Picture` of a frame straight from FFmpeg's decoder."""

    __slots__ = ("frame",)

    def __init__(self, frame: av.VideoFrame) -> None:
        self.frame = frame

    @property
    def width(self) -> int:
        """Width in pixels."""
        return int(self.frame.width)

    @property
    def height(self) -> int:
        """Height in pixels."""
        return int(self.frame.height)

    @property
    def format(self) -> str:
        """FFmpeg's pixel format name (yuv420p, nv12, ...)."""
        return str(self.frame.format.name)

    def to_image(self) -> torch.Tensor:
        """``uint8 [H, W, 3]`` RGB (swscale converts)."""
        return torch.from_numpy(self.frame.to_ndarray(format="rgb24"))

    def scaled(self, width: int, height: int, interpolation: str) -> DecodedPicture:
        """The picture scaled by swscale, in its own pixel format."""
        return DecodedPicture(self.frame.reformat(width=width, height=height,
                                                  interpolation=_SWSCALE[interpolation]))

    def for_encoder(self) -> Any | None:
        """A new ``av.VideoFrame`` with the same pixels, whose ``pts`` and ``pict_type`` an
        encoder may set (the decoder's frame may be shared by other branches of the graph);
        None for a pixel layout numpy cannot hold. The copy costs about 0.2 ms at 720p."""
        frame = self.frame
        try:
            copy = av.VideoFrame.from_numpy_buffer(frame.to_ndarray(), format=frame.format.name)
        except (ValueError, TypeError):
            return None
        copy.colorspace = frame.colorspace
        copy.color_range = frame.color_range
        return copy
