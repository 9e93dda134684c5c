"""YUV 4:2:0 to RGB and back on any device, so that frames cross between host and GPU as
their planes (half the bytes of RGB) and the GPU does the conversion.

The arithmetic is swscale's accurate path (``ACCURATE_RND`` with full chroma
interpolation): chroma is upsampled bilinearly, and subsampled by averaging each 2x2
block; the tests hold both directions within one level of swscale's output.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from .images import LUMA

Matrix = Literal["bt601", "bt709"]

#: (Kr, Kb) of each matrix; Kg = 1 - Kr - Kb
_WEIGHTS: dict[str, tuple[float, float]] = {"bt601": (LUMA[0], LUMA[2]),
                                            "bt709": (0.2126, 0.0722)}

#: FFmpeg's AVColorSpace codes that mean BT.709; swscale reads every other one (the
#: unspecified 2 included) as BT.601, and so do we
_BT709_CODES = {1}


def matrix_of(colorspace: int) -> Matrix:
    """The matrix of FFmpeg's ``AVColorSpace`` code, as swscale chooses it."""
    return "bt709" if int(colorspace) in _BT709_CODES else "bt601"


def _scales(full: bool) -> tuple[float, float, float]:
    """(luma offset, luma span, chroma span) in levels of an 8-bit plane."""
    return (0.0, 255.0, 255.0) if full else (16.0, 219.0, 224.0)


def yuv420_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor,
                  matrix: Matrix = "bt601", full: bool = False,
                  cosited: bool = False) -> torch.Tensor:
    """``uint8 [H, W, 3]`` RGB from the three ``uint8`` planes of a 4:2:0 picture (chroma
    planes of ``ceil(H/2) x ceil(W/2)``), on the planes' device. ``cosited``: each chroma
    sample sits on its even luma column (MPEG-2, H.264, HEVC) rather than between two
    (JPEG, and swscale for untagged pictures)."""
    height, width = y.shape
    kr, kb = _WEIGHTS[matrix]
    offset, luma_span, chroma_span = _scales(full)
    chroma = torch.stack([u, v]).float()[None]
    rows, cols = chroma.shape[-2:]
    chroma = F.interpolate(chroma, size=(2 * rows, cols if cosited else 2 * cols),
                           mode="bilinear", align_corners=False)
    if cosited:  # even columns take their sample, odd ones the mean of two
        after = torch.cat([chroma[..., 1:], chroma[..., -1:]], dim=-1)
        chroma = torch.stack([chroma, (chroma + after) / 2], dim=-1).flatten(-2)
    cb, cr = ((chroma[0, :, :height, :width] - 128.0) / chroma_span).unbind(0)
    luma = (y.float() - offset) / luma_span
    red = luma + 2 * (1 - kr) * cr
    blue = luma + 2 * (1 - kb) * cb
    green = (luma - kr * red - kb * blue) / (1 - kr - kb)
    rgb = torch.stack([red, green, blue], dim=-1) * 255.0
    return rgb.round_().clamp_(0, 255).to(torch.uint8)


def rgb_to_yuv420(image: torch.Tensor, matrix: Matrix = "bt601",
                  full: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``uint8`` Y, U and V planes of ``uint8 [H, W, 3]`` RGB (4:2:0: each chroma
    sample is the mean of a 2x2 block; an odd edge repeats its last row or column)."""
    kr, kb = _WEIGHTS[matrix]
    offset, luma_span, chroma_span = _scales(full)
    red, green, blue = (image.float() / 255.0).unbind(-1)
    luma = kr * red + (1 - kr - kb) * green + kb * blue
    cb = (blue - luma) / (2 * (1 - kb))
    cr = (red - luma) / (2 * (1 - kr))
    height, width = luma.shape
    chroma = torch.stack([cb, cr])[None]
    chroma = F.pad(chroma, (0, width % 2, 0, height % 2), mode="replicate")
    cb, cr = (F.avg_pool2d(chroma, 2)[0] * chroma_span + 128.0).unbind(0)

    def level(plane: torch.Tensor) -> torch.Tensor:
        return plane.round().clamp_(0, 255).to(torch.uint8)

    return level(luma * luma_span + offset), level(cb), level(cr)
