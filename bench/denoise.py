"""Denoising speed: frames per second of FFDNet and DnCNN (full and light, gray and colour),
of the gray FFDNet on a colour frame's three opponent planes (``chroma: denoise``) and of
multi-frame merging at 640x360, 1280x720 and 1920x1080, beside OpenCV's non-local
means (and BM3D when the ``bm3d`` package is installed, on the smallest size only).

    python bench/denoise.py [--device cuda] [--half] [--seconds 3] [--sizes 640x360 ...]

The shipped denoisers are measured as their files build them (their width and depth),
DnCNN untrained. Prints a table and writes bench/results/denoise.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import rate, write_report  # noqa: E402
from plugins.denoise.apply import in_colour, load  # noqa: E402
from plugins.denoise.evaluate import bm3d_method  # noqa: E402
from plugins.denoise.model import DnCNN  # noqa: E402
from plugins.denoise.temporal import merge  # noqa: E402

SIZES = {"640x360": (360, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
NETWORKS: dict[str, Callable[[], torch.nn.Module]] = {
    **{f"ffdnet {name}": (lambda name=name: load(name)[0])
       for name in ("color", "color-light", "color-opponent", "color-opponent-light", "gray",
                    "gray-light")},
    "dncnn color": lambda: DnCNN(3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="fp16 (CUDA)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "denoise.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if args.half and device.type == "cuda" else torch.float32
    rows = []

    def record(method: str, size: str, fps: float) -> None:
        rows.append({"method": method, "frames": size, "fps": fps})
        print(f"{method:22} {size:10} {fps:9.2f} fps", flush=True)

    for size in args.sizes:
        height, width = SIZES[size]
        for name, make in NETWORKS.items():
            net = make().eval().to(device, dtype)
            x = torch.rand(1, net.channels, height, width, device=device, dtype=dtype)
            with torch.inference_mode():
                record(name, size, rate(lambda net=net, x=x: net(x, 25.0).cpu(), 1,
                                        args.seconds))
        planes = in_colour(load("gray")[0]).eval().to(device, dtype)
        rgb = torch.rand(1, 3, height, width, device=device, dtype=dtype)
        with torch.inference_mode():
            record("ffdnet gray, 3 planes", size, rate(
                lambda planes=planes, rgb=rgb: planes(rgb, 25.0).cpu(), 1, args.seconds))
        frames = [torch.rand(1, 3, height, width, device=device) for _ in range(4)]
        sigma = torch.tensor([25.0], device=device)
        record("temporal, 3 earlier", size, rate(
            lambda frames=frames, sigma=sigma: merge(frames[-1], frames[:-1], sigma).cpu(),
            1, args.seconds))
        image = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
        record("non-local means", size, rate(
            lambda image=image: cv2.fastNlMeansDenoisingColored(image, None, 20, 20, 7, 21),
            1, args.seconds))
    bm3d = bm3d_method()
    if bm3d is not None:
        small = args.sizes[0]
        picture = torch.rand(3, *SIZES[small])
        record("BM3D", small, rate(lambda: bm3d(picture, 25.0), 1, args.seconds))
    write_report(args.json, device, rows, half=args.half)
    return 0


if __name__ == "__main__":
    sys.exit(main())
