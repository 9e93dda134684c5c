"""Running a denoiser on real pictures: built-in models, gray models on colour frames
(the luma is denoised, or the three planes of the opponent colour transform), large frames
in overlapping tiles without seams, and the average over turned and mirrored copies
(self-ensemble)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.kit.images import luma
from pipeline.kit.weights import built_in_files, load_network

from .model import ARCHITECTURES, Opponent

WEIGHTS = Path(__file__).with_name("weights")


def load(model: str) -> tuple[nn.Module, dict[str, Any]]:
    """The denoiser named by ``model`` (built-in name or checkpoint), eval mode, and its
    ``info``."""
    net, _, _, info = load_network(model, built_in_files(WEIGHTS), ARCHITECTURES, "denoiser")
    return net, info


def in_colour(net: nn.Module) -> nn.Module:
    """A colour denoiser from ``net``: a gray model cleans the three opponent colour
    planes (:class:`~plugins.denoise.model.Opponent`), colour models are themselves."""
    return Opponent(net) if getattr(net, "channels", 3) == 1 else net


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


#: the turns (quarter turns, mirrored) of self-ensemble, in the order ``views`` takes them:
#: 2 mirrors, 4 adds the half turn (neither swaps height and width), 8 is all of them
TURNS = [(0, False), (0, True), (2, False), (2, True),
         (1, False), (1, True), (3, False), (3, True)]
VIEWS = (1, 2, 4, 8)


def _turned(x: torch.Tensor, quarters: int, mirrored: bool) -> torch.Tensor:
    x = torch.rot90(x, quarters, (-2, -1))
    return x.flip(-1) if mirrored else x


def _unturned(x: torch.Tensor, quarters: int, mirrored: bool) -> torch.Tensor:
    return torch.rot90(x.flip(-1) if mirrored else x, -quarters, (-2, -1))


def viewed(net: nn.Module, x: torch.Tensor, sigma: torch.Tensor | float, tile: int | None,
           views: int = 1) -> torch.Tensor:
    """``tiled(net, x, sigma, tile)`` averaged over ``views`` (1, 2, 4 or 8) turned and
    mirrored copies of the pictures, each turned back (self-ensemble: Timofte, Rothe and
    Van Gool 2016). A denoiser's errors differ from copy to copy, so the average is
    closer to the clean picture, for ``views`` times the work."""
    if views not in VIEWS:
        raise ValueError(f"views {views}: one of {', '.join(map(str, VIEWS))}")
    if views == 1:  # the node's default: no copies, no sum, on every frame
        return tiled(net, x, sigma, tile)
    total = torch.zeros_like(x)
    for quarters, mirrored in TURNS[:views]:
        level = (_turned(sigma, quarters, mirrored)
                 if isinstance(sigma, torch.Tensor) and sigma.ndim == 4 else sigma)
        answer = tiled(net, _turned(x, quarters, mirrored), level, tile)
        total += _unturned(answer, quarters, mirrored)
    return total / views


def denoise_rgb(net: nn.Module, rgb: torch.Tensor, sigma: torch.Tensor | float,
                tile: int | None, views: int = 1) -> torch.Tensor:
    """Denoised RGB pictures (N, 3, H, W, 0..1): a colour model sees all three channels;
    a gray one sees the luma, and the chroma (differences to the luma) is kept. ``views``:
    see :func:`viewed`."""
    channels = getattr(net, "channels", 3)
    if channels == 3:
        return viewed(net, rgb, sigma, tile, views)
    gray = luma(rgb)
    return rgb - gray + viewed(net, gray, sigma, tile, views)
