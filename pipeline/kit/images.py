"""Conversions between frames' pixels (uint8, channels last) and what networks take (float,
channels first), written once for every plugin.

A frame's ``image`` is ``uint8 [H, W, 3]``; ``image.permute(2, 0, 1)`` is a zero-copy NCHW
view of it in channels-last memory, which is what convolutions on a GPU want.
"""

from __future__ import annotations

import torch

#: BT.601 luma weights of R, G and B
LUMA = (0.299, 0.587, 0.114)


def to_float(images: torch.Tensor, scale: float = 1 / 255,
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``uint8 [H, W, C]`` or ``[N, H, W, C]`` pictures as ``[N, C, H, W]`` floats times
    ``scale`` (0..1 by default; 1 keeps 0..255)."""
    batch = images[None] if images.ndim == 3 else images
    x = batch.permute(0, 3, 1, 2).to(dtype)
    return x * scale if scale != 1 else x


def to_uint8(x: torch.Tensor, scale: float = 255.0) -> torch.Tensor:
    """``[N, C, H, W]`` (or ``[C, H, W]``) floats times ``scale``, rounded and clamped, as
    contiguous ``uint8 [N, H, W, C]`` (or ``[H, W, C]``) pictures."""
    y = (x * scale if scale != 1 else x).round().clamp(0, 255).to(torch.uint8)
    order = (0, 2, 3, 1) if y.ndim == 4 else (1, 2, 0)
    return y.permute(*order).contiguous()


def luma(x: torch.Tensor) -> torch.Tensor:
    """The BT.601 luma ``[N, 1, H, W]`` of RGB ``[N, 3, H, W]`` floats."""
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def shrunk_size(height: int, width: int, max_side: int | None) -> tuple[int, int] | None:
    """(height, width) scaled so the longer side is at most ``max_side``; None when the
    picture already fits (or no limit is set)."""
    if max_side is None or max(height, width) <= max_side:
        return None
    factor = max_side / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))
