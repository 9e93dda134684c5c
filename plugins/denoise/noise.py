"""Noise: seeded Gaussian noise, a camera noise model, and blind noise-level estimation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.core.device import compiled_loops


def gaussian(images: torch.Tensor, sigma: float | torch.Tensor,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """``images`` (0..1) plus white Gaussian noise of ``sigma`` (0..255 scale; one number
    or one per picture), not clipped (the published benchmarks do not clip)."""
    level = torch.as_tensor(sigma, dtype=images.dtype, device=images.device) / 255
    noise = torch.randn(images.shape, generator=generator, device=images.device,
                        dtype=images.dtype)
    return images + noise * level.reshape(-1, *[1] * (images.ndim - 1))


def quantize(images: torch.Tensor) -> torch.Tensor:
    """``images`` (0..1) rounded and clipped to the 256 levels of an 8-bit picture, as a
    camera, a video or a PNG holds a noisy picture."""
    return (images * 255).round().clamp(0, 255) / 255


def to_linear(images: torch.Tensor) -> torch.Tensor:
    """sRGB (0..1) to linear light."""
    return torch.where(images <= 0.04045, images / 12.92,
                       ((images.clamp(min=0) + 0.055) / 1.055) ** 2.4)


def to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Linear light to sRGB (0..1)."""
    linear = linear.clamp(0, 1)
    return torch.where(linear <= 0.0031308, linear * 12.92,
                       1.055 * linear ** (1 / 2.4) - 0.055)


def camera(images: torch.Tensor, shot: float | torch.Tensor, read: float | torch.Tensor,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """What a sensor does to ``images`` (sRGB 0..1): in linear light, signal-dependent
    shot noise (variance ``shot`` x signal, Poisson-like) plus signal-independent read
    noise (standard deviation ``read``), then the camera's gamma again, clipped to 0..1.
    ``shot`` and ``read`` are one number or one per picture."""
    linear = to_linear(images)
    shape = (-1, *[1] * (images.ndim - 1))
    a = torch.as_tensor(shot, dtype=images.dtype, device=images.device).reshape(shape)
    b = torch.as_tensor(read, dtype=images.dtype, device=images.device).reshape(shape)
    std = (a * linear + b ** 2).clamp(min=0).sqrt()
    noise = torch.randn(images.shape, generator=generator, device=images.device,
                        dtype=images.dtype)
    return to_srgb(linear + std * noise)


def gray_pictures(images: torch.Tensor) -> torch.Tensor:
    """Which of ``images`` (N, C, H, W) are gray: every channel the same (a night-mode
    infrared camera, black and white film). Their noise is the same in every channel."""
    if images.shape[1] == 1:
        return torch.ones(images.shape[0], dtype=torch.bool, device=images.device)
    return (images[:, 1:] == images[:, :1]).flatten(1).all(1)


def estimate_sigma(images: torch.Tensor) -> torch.Tensor:
    """Blind estimate of white Gaussian noise (0..255 scale), one per picture of
    ``images`` (N, C, H, W) in 0..1: the median absolute deviation of the finest diagonal
    Haar wavelet band over 0.6745 (Donoho and Johnstone 1994), taken over the flatter half
    of the picture (where the band holds noise, not texture or edges)."""
    x = images.mean(1, keepdim=True) if images.shape[1] > 1 else images
    # averaging C channels divides independent noise by sqrt(C); a gray picture's channels
    # carry one and the same noise, which averaging keeps
    mix = torch.where(gray_pictures(images), 1.0, images.shape[1] ** 0.5).to(images.dtype)
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :height, :width]
    haar = torch.tensor([[[[0.5, -0.5], [-0.5, 0.5]]], [[[0.5, 0.5], [0.5, 0.5]]]],
                        dtype=x.dtype, device=x.device)
    diagonal, average = F.conv2d(x, haar, stride=2).split(1, 1)
    # structure: gradient of the (smoothed) half-size picture, which noise barely moves
    smooth = F.avg_pool2d(average, 3, 1, 1)
    gy, gx = torch.gradient(smooth, dim=(2, 3))
    structure = (gx.abs() + gy.abs()).flatten(1)
    flat = structure <= structure.median(dim=1, keepdim=True).values
    band = diagonal.flatten(1).abs()
    return flat_median(band, flat) / 0.6745 * 255 * mix


def flat_median(values: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Per row of ``values`` (N, M), the median of the entries ``chosen`` (a boolean mask)
    marks, as ``torch.median`` takes it (the lower of two middles). The tensor code does
    not index by the mask, which would wait for the device once per row: the others sort
    last instead. On the CPU a selection per row is three times as fast as that sort."""
    if compiled_loops(values):
        return torch.stack([v[c].median() for v, c in zip(values, chosen, strict=True)])
    ordered = values.masked_fill(~chosen, float("inf")).sort(1).values
    middle = ((chosen.sum(1) - 1).clamp(min=0) // 2)[:, None]
    return ordered.gather(1, middle)[:, 0]
