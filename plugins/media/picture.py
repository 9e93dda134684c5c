"""A decoded ``av.VideoFrame`` held by a :class:`~pipeline.core.frame.Frame` as its native
picture: converted to RGB only when a node reads the pixels (by swscale on the host, or on
the GPU from its uploaded planes), scaled by swscale, and copied before an encoder gets
it, since several sinks may hold the same one."""

from __future__ import annotations

import threading
from typing import Any

import av
import torch
from av.video.reformatter import VideoReformatter

from pipeline.kit.colour import matrix_of, yuv420_to_rgb

_SWSCALE = {"nearest": "POINT", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "area": "AREA"}
#: the 4:2:0 layouts uploaded as planes, and whether their format itself means full range
_PLANAR_420 = {"yuv420p": False, "yuvj420p": True}
#: FFmpeg's AVCOL_RANGE_JPEG (full range)
_FULL_RANGE = 2
#: decoders whose 4:2:0 chroma sits on the even luma columns (their standards' default,
#: which FFmpeg's decoders set and swscale follows; PyAV does not expose the tag itself)
_COSITED = {"h264", "hevc", "mpeg2video", "mpeg4"}


_local = threading.local()


def _reformatter() -> VideoReformatter:
    """This thread's swscale holder. PyAV's ``frame.reformat`` makes a new swscale context
    for every new frame (8 ms at 720p); a kept ``VideoReformatter`` reuses its context while
    sizes and formats stay (0.5 ms). One per thread: several branches may convert at once."""
    kept = getattr(_local, "reformatter", None)
    if kept is None:
        kept = _local.reformatter = VideoReformatter()
    return kept


def full_range(frame: av.VideoFrame) -> bool:
    """Whether ``frame``'s levels span 0-255: tagged so, or a yuvj format."""
    return _PLANAR_420.get(frame.format.name, False) or int(frame.color_range) == _FULL_RANGE


def cosited(codec: str) -> bool:
    """Whether pictures decoded by ``codec`` have horizontally co-sited chroma."""
    return codec in _COSITED


class DecodedPicture:
    """The :class:`~pipeline.core.frame.Picture` of a frame straight from FFmpeg's decoder."""

    __slots__ = ("cosited", "frame")

    def __init__(self, frame: av.VideoFrame, cosited: bool = False) -> None:
        self.frame = frame
        self.cosited = cosited  # where its chroma sits (see :func:`cosited`)

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
        """``uint8 [H, W, 3]`` RGB (swscale converts, by the frame's matrix and range)."""
        return torch.from_numpy(_reformatter().reformat(self.frame, format="rgb24").to_ndarray())

    def to_device(self, device: torch.device) -> torch.Tensor:
        """``uint8 [H, W, 3]`` RGB on ``device``: a 4:2:0 picture travels as its planes
        (half the bytes of RGB) and is converted there; any other layout is converted by
        swscale first."""
        frame = self.frame
        if frame.format.name not in _PLANAR_420 or frame.width % 2 or frame.height % 2:
            return self.to_image().to(device)
        height, width = self.height, self.width
        # One contiguous [Y; U; V] buffer, so one copy crosses the bus.
        planes = torch.from_numpy(frame.to_ndarray()).to(device).view(-1)
        y = planes[:height * width].view(height, width)
        u, v = planes[height * width:].view(2, height // 2, width // 2)
        return yuv420_to_rgb(y, u, v, matrix_of(frame.colorspace), full_range(frame),
                             self.cosited)

    def scaled(self, width: int, height: int, interpolation: str) -> DecodedPicture:
        """The picture scaled by swscale, in its own pixel format."""
        scaled = _reformatter().reformat(self.frame, width=width, height=height,
                                         interpolation=_SWSCALE[interpolation])
        return DecodedPicture(scaled, self.cosited)

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
