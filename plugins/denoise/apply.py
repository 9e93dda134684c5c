"""Running a denoiser on real pictures: built-in models, gray models on colour frames
(the luma is denoised), large frames in overlapping tiles without seams."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.kit.images import luma
from pipeline.kit.weights import built_in_files, load_network

from .model import ARCHITECTURES

WEIGHTS = Path(__file__).with_name("weights")


def load(model: str) -> tuple[nn.Module, dict[str, Any]]:
    """The denoiser named by ``model`` (built-in name or checkpoint), eval mode, and its
    ``info``."""
    net, _, _, info = load_network(model, built_in_files(WEIGHTS), ARCHITECTURES, "denoiser")
    return net, info


def _tiles(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


def _ramp(length: int, overlap: int, first: bool, last: bool,
          device: torch.device) -> torch.Tensor:
    weight = torch.ones(length, device=device)
    fade = torch.linspace(0, 1, overlap + 2, device=device)[1:-1]
    if not first:
        weight[:overlap] = fade
    if not last:
        weight[-overlap:] = fade.flip(0)
    return weight


def tiled(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor | float, tile: int | None,
          overlap: int = 32) -> torch.Tensor:
    """``net(x, sigma)``, in ``tile`` x ``tile`` pieces overlapping by ``overlap`` pixels
    when ``tile`` is set, feathered together with linear ramps so no seam shows."""
    height, width = x.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return net(x, sigma)
    out = torch.zeros_like(x)
    total = torch.zeros_like(x[:, :1])
    ys, xs = _tiles(height, tile, overlap), _tiles(width, tile, overlap)
    for i, y in enumerate(ys):
        for j, x0 in enumerate(xs):
            piece = x[..., y:y + tile, x0:x0 + tile]
            level = (sigma[..., y:y + tile, x0:x0 + tile]
                     if isinstance(sigma, torch.Tensor) and sigma.ndim == 4 else sigma)
            done = net(piece, level)
            h, w = piece.shape[-2:]
            weight = (_ramp(h, overlap, i == 0, i == len(ys) - 1, x.device)[:, None]
                      * _ramp(w, overlap, j == 0, j == len(xs) - 1, x.device)[None, :])
            out[..., y:y + h, x0:x0 + w] += done * weight
            total[..., y:y + h, x0:x0 + w] += weight
    return out / total


def denoise_rgb(net: nn.Module, rgb: torch.Tensor, sigma: torch.Tensor | float,
                tile: int | None) -> torch.Tensor:
    """Denoised RGB pictures (N, 3, H, W, 0..1): a colour model sees all three channels;
    a gray one sees the luma, and the chroma (differences to the luma) is kept."""
    channels = getattr(net, "channels", 3)
    if channels == 3:
        return tiled(net, rgb, sigma, tile)
    gray = luma(rgb)
    return rgb - gray + tiled(net, gray, sigma, tile)
