"""Score denoisers on clean pictures with seeded noise (`vidgraph eval denoise`).

PSNR and SSIM per noise level, for the given models beside OpenCV's non-local means and,
when the ``bm3d`` package is installed, BM3D; printed as a table (and written as JSON).
Noise is seeded per picture and level. By default the noisy pictures are 8-bit, as a
camera or a PNG holds them (noise added, rounded and clipped to 0-255: what a user feeds
the denoise node); ``--noise float`` leaves them unrounded and unclipped, as the published
benchmarks do. Every method sees the same noisy pictures.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.core.errors import VidgraphError

from .apply import VIEWS, in_colour, load, viewed
from .noise import gaussian, quantize
from .train import psnr, read_pictures

Method = Callable[[torch.Tensor, float], torch.Tensor]


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Structural similarity (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) of two
    pictures (C, H, W) in 0..1, averaged over channels."""
    coords = torch.arange(11, dtype=torch.float32) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    # five maps at once, the Gaussian window applied separably
    x, y = a.float()[:, None], b.float()[:, None]
    maps = torch.cat([x, y, x * x, y * y, x * y], 1).flatten(0, 1)[:, None]
    maps = F.conv2d(F.conv2d(maps, g.view(1, 1, 1, 11)), g.view(1, 1, 11, 1))
    mx, my, xx, yy, xy = maps.view(a.shape[0], 5, *maps.shape[-2:]).unbind(1)
    vx, vy, cxy = xx - mx ** 2, yy - my ** 2, xy - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(value.mean())


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    array = (x.clamp(0, 1) * 255).round().byte()
    return array[0].numpy() if array.shape[0] == 1 else array.permute(1, 2, 0).numpy()


def non_local_means(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
    """OpenCV's non-local means with its filter strength set from the noise level."""
    image = _as_uint8(noisy)
    if image.ndim == 2:
        out = cv2.fastNlMeansDenoising(image, None, h=0.8 * sigma, templateWindowSize=7,
                                       searchWindowSize=21)
        return torch.from_numpy(out)[None].float() / 255
    out = cv2.fastNlMeansDenoisingColored(image, None, h=0.8 * sigma, hColor=0.8 * sigma,
                                          templateWindowSize=7, searchWindowSize=21)
    return torch.from_numpy(out).permute(2, 0, 1).float() / 255


def bm3d_method() -> Method | None:
    """BM3D (Dabov et al. 2007) from the ``bm3d`` package, when installed; CBM3D on
    colour pictures."""
    try:
        import bm3d  # type: ignore[import-not-found]
    except ImportError:
        return None

    def run(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        array = noisy.permute(1, 2, 0).double().numpy()
        if array.shape[2] == 1:
            out = bm3d.bm3d(array[:, :, 0], sigma_psd=sigma / 255)[:, :, None]
        else:
            out = bm3d.bm3d_rgb(array, sigma_psd=sigma / 255)
        return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).float()

    return run


def noisy_picture(clean: torch.Tensor, sigma: float, seed: int, kind: str) -> torch.Tensor:
    """``clean`` with seeded Gaussian noise of ``sigma`` (0..255 scale); ``kind`` 8bit
    rounds and clips it to the 256 levels of an 8-bit picture."""
    noisy = gaussian(clean, sigma, torch.Generator().manual_seed(seed))
    return quantize(noisy) if kind == "8bit" else noisy


def model_method(name: str, device: torch.device, tile: int | None, views: int = 1
                 ) -> Method:
    """A trained model (built-in name or checkpoint) as a method (``views``: see
    :func:`~plugins.denoise.apply.viewed`). A gray model scores colour pictures plane by
    plane in opponent colour (:func:`~plugins.denoise.apply.in_colour`)."""
    net, _ = load(name)
    nets = {1: net.to(device), 3: in_colour(net).to(device)}

    @torch.no_grad()
    def run(noisy: torch.Tensor, sigma: float) -> torch.Tensor:
        x = noisy[None].to(device)
        return viewed(nets[x.shape[1]], x, sigma, tile, views)[0].float().cpu()

    return run


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the command's options."""
    parser.add_argument("--data", required=True, help="a folder of clean pictures")
    parser.add_argument("--sigma", default="15,25,50", help="noise levels, comma-separated")
    parser.add_argument("--model", action="append", default=[],
                        help="a denoiser to score (built-in name or checkpoint; repeatable); "
                        "a gray one scores colour pictures plane by plane in opponent colour")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1,
                        help="score on gray (1) or colour (3) pictures")
    parser.add_argument("--baselines", default="nlm,bm3d",
                        help="classic methods to score beside the models: nlm, bm3d (when "
                        "the bm3d package is installed), comma-separated, or none")
    parser.add_argument("--noise", choices=("8bit", "float"), default="8bit",
                        help="8bit: noisy pictures rounded and clipped to 0-255 (default); "
                        "float: neither, as in the published benchmarks")
    parser.add_argument("--tile", type=int, help="run models in tiles of this side")
    parser.add_argument("--views", type=int, choices=VIEWS, action="append",
                        help="also score each model averaged over this many turned and "
                        "mirrored copies (self-ensemble; repeatable)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", help="also write the table here")


def main(args: argparse.Namespace) -> int:
    """Score every method at every level; print the table."""
    try:
        levels = [float(s) for s in args.sigma.split(",")]
    except ValueError as exc:
        raise VidgraphError(f"--sigma '{args.sigma}': comma-separated numbers") from exc
    pictures = read_pictures([args.data], args.channels)
    device = torch.device(args.device)
    methods: dict[str, Method] = {}
    for name in args.model:
        methods[name] = model_method(name, device, args.tile)
        for views in args.views or []:
            if views > 1:
                methods[f"{name}, {views} views"] = model_method(name, device, args.tile,
                                                                 views)
    baselines = set(args.baselines.split(","))
    if "nlm" in baselines:
        methods["non-local means (OpenCV)"] = non_local_means
    found = bm3d_method() if "bm3d" in baselines else None
    if found is not None:
        # colour pictures go through bm3d_rgb: CBM3D, its opponent-colour variant
        methods["BM3D" if args.channels == 1 else "CBM3D"] = found
    rows = []
    for sigma in levels:
        noisy = [noisy_picture(p, sigma, i * 1000 + int(sigma), args.noise)
                 for i, p in enumerate(pictures)]
        rows.append({"method": "noisy input", "sigma": sigma,
                     "psnr": float(np.mean([psnr(n, p) for n, p in zip(noisy, pictures,
                                                                          strict=True)])),
                     "ssim": float(np.mean([ssim(n.clamp(0, 1), p) for n, p in
                                            zip(noisy, pictures, strict=True)])),
                     "seconds": 0.0})
        for name, method in methods.items():
            started = time.monotonic()
            outputs = [method(n, sigma) for n in noisy]
            rows.append({"method": name, "sigma": sigma, "seconds": round(
                (time.monotonic() - started) / len(noisy), 3),
                "psnr": float(np.mean([psnr(o, p) for o, p in zip(outputs, pictures,
                                                                     strict=True)])),
                "ssim": float(np.mean([ssim(o.clamp(0, 1), p) for o, p in
                                       zip(outputs, pictures, strict=True)]))})
    print(format_table(rows, levels, len(pictures), args.data))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def format_table(rows: list[dict], levels: list[float], count: int, data: str) -> str:
    """PSNR / SSIM per method (rows) and noise level (columns)."""
    names = list(dict.fromkeys(r["method"] for r in rows))
    width = max(len(n) for n in names) + 2
    head = "".join(f"sigma {s:g}".rjust(18) for s in levels)
    lines = [f"{count} pictures from {data}; PSNR dB / SSIM", "method".ljust(width) + head]
    for name in names:
        cells = []
        for sigma in levels:
            row = next(r for r in rows if r["method"] == name and r["sigma"] == sigma)
            cells.append(f"{row['psnr']:.2f} / {row['ssim']:.4f}".rjust(18))
        lines.append(name.ljust(width) + "".join(cells))
    return "\n".join(lines)

