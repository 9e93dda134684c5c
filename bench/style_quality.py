"""Style transfer quality and flicker of a trained style.

Quality: the style and content losses of the network's output on a few pictures it never
saw (Kodak24), relative to an optimisation-based result (Gatys et al. 2016: the pixels
themselves optimised with L-BFGS, from the photo, for the same weighted loss with the
same VGG-19 layers and painting as the training used). A ratio near 1 means the fast
network is about as good as the slow optimisation at what both minimise.

Flicker: the mean absolute difference between consecutive output frames divided by that
of the input frames, on a static-camera clip with sensor noise, with the node's
``temporal`` blending off and on.

    python bench/style_quality.py --model starry_night-light \\
        --style ../shared/datasets/styles/starry_night.jpg \\
        --pictures ../shared/datasets/color-test/Kodak24 [--count 3] [--side 256]

Prints the tables and writes bench/results/style_quality.json.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import write_report  # noqa: E402
from pipeline.core.frame import Frame  # noqa: E402
from pipeline.kit.testing import run_node  # noqa: E402
from plugins.style import checkpoint  # noqa: E402
from plugins.style.losses import PerceptualLoss  # noqa: E402
from plugins.style.train import read_picture, style_target  # noqa: E402
from plugins.style.vgg import VGG19  # noqa: E402


def photo(path: Path, side: int) -> torch.Tensor:
    """A picture (1, 3, H, W, 0..1) with its shorter side at ``side``."""
    import cv2

    picture = read_picture(path)
    scale = side / min(picture.shape[:2])
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(np.ascontiguousarray(picture)).permute(2, 0, 1)[None].float() / 255


def weighted(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """The training objective: the losses times their weights, summed."""
    return sum((weights[k] * v for k, v in losses.items()), torch.zeros(()))


def gatys(content: torch.Tensor, loss_fn: PerceptualLoss, weights: dict[str, float],
          steps: int) -> torch.Tensor:
    """The optimisation-based result: pixels optimised with L-BFGS from the photo."""
    image = content.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([image], lr=1.0, max_iter=steps, history_size=50,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        total = weighted(dict(loss_fn(image, content)), weights)
        total.backward()
        # the loss network runs channels-last; L-BFGS flattens the gradient with view()
        image.grad = image.grad.contiguous()  # type: ignore[union-attr]
        return total

    optimizer.step(closure)
    return image.detach().clamp(0, 1)


def flicker(frames: list[Frame]) -> float:
    """Mean absolute difference between consecutive frames (grey levels)."""
    return float(np.mean([(b.image.float() - a.image.float()).abs().mean()
                          for a, b in itertools.pairwise(frames)]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="built-in style or checkpoint")
    parser.add_argument("--style", required=True, help="the painting it was trained on")
    parser.add_argument("--pictures", required=True, help="a folder of photos (Kodak24)")
    parser.add_argument("--count", type=int, default=3, help="photos to score")
    parser.add_argument("--side", type=int, default=256, help="their shorter side")
    parser.add_argument("--steps", type=int, default=200, help="L-BFGS iterations (Gatys)")
    parser.add_argument("--frames", type=int, default=12, help="frames of the flicker clip")
    parser.add_argument("--temporal", type=float, default=0.5, help="blending to compare")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" /
                                              "style_quality.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net, info = checkpoint.load(args.model)
    vgg = VGG19.pretrained().eval()
    for parameter in vgg.parameters():
        parameter.requires_grad_(False)
    painting = style_target(Path(args.style), info.get("style_size", 512))
    style = torch.from_numpy(painting).permute(2, 0, 1)[None].float() / 255
    loss_fn = PerceptualLoss(vgg, style, content_layers=info["content_layers"],
                             style_layers=info["style_layers"])
    weights = {k: v for k, v in info["weights"].items() if k != "temporal"}
    files = sorted(p for p in Path(args.pictures).iterdir()
                   if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[:args.count]
    rows = []
    print(f"{args.model} on {len(files)} pictures ({args.side} px), against Gatys "
          f"({args.steps} L-BFGS iterations); losses times their training weights")
    print(f"{'picture':12}{'method':>10}{'content':>12}{'style':>12}{'tv':>12}{'total':>12}"
          f"{'seconds':>10}")
    for file in files:
        content = photo(file, args.side)
        for method in ("network", "gatys"):
            started = time.monotonic()
            if method == "network":
                with torch.no_grad():
                    output = net(content).clamp(0, 1)
            else:
                output = gatys(content, loss_fn, weights, args.steps)
            seconds = time.monotonic() - started
            with torch.no_grad():
                losses = {k: float(weights[k] * v) for k, v in loss_fn(output, content).items()}
            row = {"picture": file.name, "method": method, **losses,
                   "total": sum(losses.values()), "seconds": round(seconds, 2)}
            rows.append(row)
            print(f"{file.name:12}{method:>10}{row['content']:12.4g}{row['style']:12.4g}"
                  f"{row['tv']:12.4g}{row['total']:12.4g}{seconds:10.1f}")
    ratios = {key: float(np.mean([a[key] / b[key] for a, b in zip(rows[::2], rows[1::2],
                                                                   strict=True)]))
              for key in ("content", "style", "total")}
    print("network / gatys, mean over pictures: " +
          ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))

    # a static camera: the same photo with fresh sensor noise in every frame
    clean = photo(files[0], args.side)[0].permute(1, 2, 0) * 255
    generator = torch.Generator().manual_seed(0)
    clip = [Frame.from_image((clean + 3 * torch.randn(clean.shape, generator=generator))
                             .round().clamp(0, 255).byte(), index=i, stream="cam")
            for i in range(args.frames)]
    plain = run_node("style_transfer", clip, model=args.model)
    steady = run_node("style_transfer", clip, model=args.model, temporal=args.temporal)
    base = flicker(clip)
    flickers = {"temporal 0": flicker(plain) / base,
                f"temporal {args.temporal:g}": flicker(steady) / base}
    print("flicker (output / input change between frames), static camera with noise: " +
          ", ".join(f"{k} {v:.2f}" for k, v in flickers.items()))
    write_report(args.json, torch.device("cpu"), rows, model=args.model, style=args.style,
                 side=args.side, steps=args.steps, ratios=ratios, flicker=flickers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
