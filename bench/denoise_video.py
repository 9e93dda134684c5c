"""Video denoising quality: PSNR per frame of a synthetic noisy clip against its clean
frames, for the single-frame model (``denoise``), multi-frame merging
(``temporal_denoise``) and both combined (the model, then merging, as in
graphs/denoise_file.yaml).

The clip is a picture seen by a panning camera (a few pixels a frame, both ways) with a
textured square moving across it faster than the camera, so merging has to follow the
camera and must not ghost the square: its PSNR is reported on its own.

    python bench/denoise_video.py [--model color-light] [--sigma 25] [--frames 24]
                                  [--picture PATH] [--size 640x360]

Prints the table and writes bench/results/denoise_video.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import write_report  # noqa: E402
from pipeline.core.frame import Frame  # noqa: E402
from pipeline.kit.testing import run_node  # noqa: E402
from plugins.denoise.noise import gaussian  # noqa: E402

#: camera motion in pixels per frame (down, right) and the square's (right)
PAN, SQUARE_SPEED, SQUARE = (1, 3), 12, 64


def clip(picture: torch.Tensor, frames: int, height: int, width: int
         ) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
    """Clean frames (1, 3, H, W) and where the moving square's top-left corner is."""
    need_h, need_w = height + PAN[0] * frames, width + PAN[1] * frames
    scale = max(need_h / picture.shape[-2], need_w / picture.shape[-1])
    size = (math.ceil(picture.shape[-2] * scale), math.ceil(picture.shape[-1] * scale))
    scene = F.interpolate(picture, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    pattern = torch.linspace(0.2, 0.9, SQUARE)
    texture = torch.stack([pattern[:, None] * pattern.flip(0)[None, :],
                           pattern[None, :].expand(SQUARE, -1),
                           pattern.flip(0)[:, None].expand(-1, SQUARE)])[None]
    out, corners = [], []
    for k in range(frames):
        y, x = PAN[0] * k, PAN[1] * k
        frame = scene[..., y:y + height, x:x + width].clone()
        top, left = height // 3, (40 + SQUARE_SPEED * k) % (width - SQUARE)
        frame[..., top:top + SQUARE, left:left + SQUARE] = texture
        out.append(frame)
        corners.append((top, left))
    return out, corners


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of pictures in 0..1."""
    return 10 * math.log10(1 / max(1e-12, float(((a.clamp(0, 1) - b) ** 2).mean())))


def as_frames(pictures: list[torch.Tensor]) -> list[Frame]:
    """8-bit RGB frames of one stream, as a camera would deliver them."""
    return [Frame.from_image((p[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0)
                             .contiguous(), index=i, stream="cam")
            for i, p in enumerate(pictures)]


def unit(frame: Frame) -> torch.Tensor:
    """A frame as (1, 3, H, W) in 0..1."""
    return frame.image.permute(2, 0, 1)[None].float() / 255


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="color-light", help="built-in name or checkpoint")
    parser.add_argument("--sigma", type=float, default=25.0, help="Gaussian noise (0..255)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--merge", type=int, default=4, help="earlier frames merged")
    parser.add_argument("--picture", help="the scene (default: scikit-image's astronaut)")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" /
                                              "denoise_video.json"))
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    if args.picture:
        import cv2

        image = cv2.cvtColor(cv2.imread(args.picture, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    else:
        from skimage import data

        image = data.astronaut()
    picture = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    clean, corners = clip(picture, args.frames, height, width)
    generator = torch.Generator().manual_seed(0)
    noisy = as_frames([gaussian(c, args.sigma, generator) for c in clean])
    model = run_node("denoise", noisy, model=args.model, sigma=args.sigma)
    methods = {
        "noisy": noisy,
        args.model: model,
        f"temporal ({args.merge})": run_node("temporal_denoise", noisy, frames=args.merge,
                                             sigma=args.sigma),
        # as graphs/denoise_file.yaml: the level of what the model leaves is estimated
        # anew, and read low (that noise is no longer white), hence the larger strength
        "both": run_node("temporal_denoise", model, frames=args.merge, strength=3.0),
    }
    rows = []
    for k, (c, (top, left)) in enumerate(zip(clean, corners, strict=True)):
        square = (..., slice(top, top + SQUARE), slice(left, left + SQUARE))
        for name, frames in methods.items():
            out = unit(frames[k])
            rows.append({"frame": k, "method": name, "psnr": round(psnr(out, c), 2),
                         "square_psnr": round(psnr(out[square], c[square]), 2)})
    names = list(methods)
    print(f"{args.frames} frames {width}x{height}, Gaussian sigma {args.sigma:g}, camera "
          f"panning {PAN} px/frame, a square moving {SQUARE_SPEED} px/frame; PSNR dB")
    print("frame" + "".join(f"{n:>18}" for n in names))
    for k in range(args.frames):
        cells = [next(r["psnr"] for r in rows if r["frame"] == k and r["method"] == n)
                 for n in names]
        print(f"{k:5}" + "".join(f"{v:18.2f}" for v in cells))
    for key, label in (("psnr", "mean"), ("square_psnr", "square")):
        means = [np.mean([r[key] for r in rows if r["method"] == n]) for n in names]
        print(f"{label:6}" + "".join(f"{v:17.2f}" for v in means))
    write_report(args.json, torch.device("cpu"), rows, model=args.model, sigma=args.sigma,
                 frames=args.frames, size=args.size, merge=args.merge, pan=PAN,
                 square_speed=SQUARE_SPEED)
    return 0


if __name__ == "__main__":
    sys.exit(main())
