"""Style transfer speed: frames per second of the full and light Johnson and Ulyanov
networks at 640x360, 1280x720 and 1920x1080 (uint8 frames in and out, blending included).

    python bench/style.py [--device cuda] [--half] [--batch 4] [--seconds 3]

Speed does not depend on the weights, so untrained networks are measured. Prints a table
and writes bench/results/style.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import rate, write_report  # noqa: E402
from plugins.style.model import JohnsonNet, UlyanovNet  # noqa: E402

SIZES = {"640x360": (360, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}
NETWORKS = {"johnson": lambda: JohnsonNet(), "johnson-light": lambda: JohnsonNet(0.5, 3),
            "ulyanov": lambda: UlyanovNet(), "ulyanov-light": lambda: UlyanovNet(0.5)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="fp16 and channels-last (CUDA)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "style.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    half = args.half and device.type == "cuda"
    dtype = torch.float16 if half else torch.float32
    fmt = torch.channels_last if half else torch.contiguous_format
    rows = []
    for name, make in NETWORKS.items():
        net = make().eval().to(device, dtype).to(memory_format=fmt)
        for size in args.sizes:
            frames = torch.randint(0, 256, (args.batch, *SIZES[size], 3), dtype=torch.uint8,
                                   device=device)

            @torch.inference_mode()
            def run(frames: torch.Tensor = frames, net: torch.nn.Module = net) -> None:
                x = frames.permute(0, 3, 1, 2).to(dtype).contiguous(memory_format=fmt) / 255
                out = (net(x).clamp(0, 1) * 255).round().to(torch.uint8)
                out.permute(0, 2, 3, 1).cpu()

            fps = rate(run, args.batch, args.seconds)
            rows.append({"network": name, "frames": size, "fps": fps})
            print(f"{name:14} {size:10} batch {args.batch}: {fps:8.2f} fps", flush=True)
    write_report(args.json, device, rows, half=half, batch=args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
