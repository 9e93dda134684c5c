"""Multi-frame denoising: align earlier frames to the current one, merge robustly.

In the manner of HDR+ burst photography (Hasinoff et al. 2016): alignment is tile-based and
coarse to fine (each tile of the current frame finds the integer offset at which an
earlier frame matches it best, searching around the offset found one level coarser), and
the merge is a per-pixel robust average: an earlier frame counts fully where it matches
the current one to within the noise, and not at all where it does not (a moving object, a
failed alignment), so nothing ghosts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _gray(x: torch.Tensor) -> torch.Tensor:
    return x.mean(1, keepdim=True) if x.shape[1] > 1 else x


def _shifted(image: torch.Tensor, offsets: torch.Tensor, tile: int) -> torch.Tensor:
    """``image`` (N, C, H, W) with each ``tile`` x ``tile`` tile read from its own integer
    offset (N, 2, TH, TW) in pixels (dx, dy); edges replicate."""
    height, width = image.shape[-2:]
    per_pixel = offsets.repeat_interleave(tile, 2).repeat_interleave(tile, 3)
    per_pixel = per_pixel[..., :height, :width].to(image.dtype)
    ys = torch.arange(height, device=image.device, dtype=image.dtype)
    xs = torch.arange(width, device=image.device, dtype=image.dtype)
    gx = (xs[None, None, :] + per_pixel[:, 0]) * 2 / max(1, width - 1) - 1
    gy = (ys[None, :, None] + per_pixel[:, 1]) * 2 / max(1, height - 1) - 1
    grid = torch.stack([gx, gy], -1)
    return F.grid_sample(image, grid, mode="nearest", padding_mode="border",
                         align_corners=True)


def align(reference: torch.Tensor, other: torch.Tensor, tile: int = 16, search: int = 2,
          levels: int = 3) -> torch.Tensor:
    """Per-tile integer offsets (N, 2, ceil(H / tile), ceil(W / tile)) at which ``other``
    best matches ``reference`` (both (N, C, H, W)), found coarse to fine over ``levels``
    halvings, searching +-``search`` pixels at each (so up to about
    search * 2^levels pixels of motion)."""
    ref_pyr, oth_pyr = [_gray(reference)], [_gray(other)]
    for _ in range(levels - 1):
        ref_pyr.append(F.avg_pool2d(ref_pyr[-1], 2, ceil_mode=True))
        oth_pyr.append(F.avg_pool2d(oth_pyr[-1], 2, ceil_mode=True))
    n = reference.shape[0]
    offsets: torch.Tensor | None = None
    steps = torch.arange(-search, search + 1, device=reference.device)
    candidates = torch.cartesian_prod(steps, steps)  # (K, 2): dx, dy
    for level in reversed(range(levels)):
        ref, oth = ref_pyr[level], oth_pyr[level]
        size = max(2, tile >> level)
        rows, cols = -(-ref.shape[2] // size), -(-ref.shape[3] // size)
        if offsets is None:
            base = torch.zeros((n, 2, rows, cols), device=ref.device)
        else:
            # the coarser level's offsets, doubled, for the tiles that now cover them
            base = F.interpolate(offsets.float() * 2, size=(rows, cols), mode="nearest")
        costs = []
        for dx, dy in candidates.tolist():
            trial = base + torch.tensor([dx, dy], device=ref.device).view(1, 2, 1, 1)
            moved = _shifted(oth, trial, size)
            error = (moved - ref).abs()
            costs.append(F.avg_pool2d(error, size, ceil_mode=True))
        best = torch.stack(costs, 0).squeeze(2).argmin(0)  # (N, rows, cols)
        offsets = base + candidates[best].permute(0, 3, 1, 2).to(base.dtype)
    assert offsets is not None
    return offsets


def merge(current: torch.Tensor, earlier: list[torch.Tensor], sigma: torch.Tensor,
          strength: float = 1.0, tile: int = 16, search: int = 2) -> torch.Tensor:
    """``current`` (N, C, H, W, 0..1) merged with ``earlier`` frames of the same streams,
    each aligned first. ``sigma`` (N,) is the noise level on the 0..255 scale; an earlier
    pixel's weight falls from 1 to 0 as its smoothed difference from the current one grows
    past what that noise explains (``strength`` scales the allowance)."""
    total = current.clone()
    weights = torch.ones_like(current[:, :1])
    # E|a - b| for two pixels with independent noise
    expected = (sigma / 255).view(-1, 1, 1, 1) * 1.128 + 1e-4
    for frame in earlier:
        moved = _shifted(frame, align(current, frame, tile, search), tile)
        # a 5x5 window mean of |difference|: noise alone stays near `expected`, a real
        # change goes well past it. Per channel before averaging, so that a change of
        # colour at equal brightness counts too (it would cancel in a gray difference).
        difference = F.avg_pool2d((moved - current).abs().mean(1, keepdim=True), 5, 1, 2,
                                  count_include_pad=False)
        excess = (difference / expected - 1).clamp(min=0)
        weight = (1 - excess / (1.5 * strength)).clamp(0, 1)
        total += weight * moved
        weights += weight
    return total / weights
