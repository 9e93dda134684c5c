"""Where a colour denoiser's error lies beside CBM3D's: its answers and CBM3D's on the same
8-bit noisy pictures (the noise of `vidgraph eval denoise`), each split into the three
opponent colour planes CBM3D works in (the mean of R, G and B, red against blue, green
against magenta). For each plane the PSNR of both; then the model's PSNR with CBM3D's
mean plane put in its place, and with CBM3D's chroma planes put in theirs: how much of
CBM3D's lead each part holds.

    python bench/denoise_planes.py ../shared/datasets/color-test/Kodak24 \\
        --model color-opponent --sigma 15

Prints a Markdown table (needs the ``bm3d`` package).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from plugins.denoise.evaluate import bm3d_method, model_method, noisy_picture  # noqa: E402
from plugins.denoise.model import OPPONENT, OPPONENT_CENTRE, OPPONENT_INVERSE  # noqa: E402
from plugins.denoise.train import psnr, read_pictures  # noqa: E402


def main() -> int:
    """Score the model and CBM3D plane by plane; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="folder of clean colour pictures")
    parser.add_argument("--model", default="color-opponent")
    parser.add_argument("--sigma", type=float, default=15.0)
    parser.add_argument("--count", type=int, help="only the first pictures")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cbm3d = bm3d_method()
    if cbm3d is None:
        raise SystemExit("denoise_planes: needs the bm3d package (pip install bm3d)")
    model = model_method(args.model, torch.device("cpu"), None)
    pictures = read_pictures([args.data], 3)[:args.count]
    names = ["RGB", "mean plane", "red - blue", "green - magenta",
             "RGB, CBM3D's mean plane", "RGB, CBM3D's chroma"]
    scores: dict[str, list[list[float]]] = {"model": [], "CBM3D": []}
    centre = OPPONENT_CENTRE.view(3, 1, 1)
    for i, clean in enumerate(pictures):
        # the seed `vidgraph eval denoise` gives this picture at this level
        noisy = noisy_picture(clean, args.sigma, i * 1000 + int(args.sigma), "8bit")
        ours, theirs = (method(noisy, args.sigma).clamp(0, 1) for method in (model, cbm3d))
        # centred as the Opponent model holds them: every plane within 0..1, as psnr takes
        truth, ours_planes, their_planes = (
            torch.einsum("ij,jhw->ihw", OPPONENT, x) + centre for x in (clean, ours, theirs))
        for name, out, out_planes in (("model", ours, ours_planes),
                                      ("CBM3D", theirs, their_planes)):
            scores[name].append([psnr(out, clean)] + [
                psnr(p, t) for p, t in zip(out_planes, truth, strict=True)])
        for mixed in (torch.cat([their_planes[:1], ours_planes[1:]]),
                      torch.cat([ours_planes[:1], their_planes[1:]])):
            back = torch.einsum("ij,jhw->ihw", OPPONENT_INVERSE, mixed - centre)
            # the mixed picture as it comes back, unclamped (psnr clamps its first one)
            scores["model"][-1].append(psnr(clean, back))
    print(f"{len(pictures)} pictures of {args.data}, 8-bit noise of sigma {args.sigma:g}; "
          "mean PSNR dB")
    print("\n| | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, rows in scores.items():
        means = np.mean(rows, 0)
        cells = [f"{v:.2f}" for v in means] + [""] * (len(names) - len(means))
        print(f"| {args.model if name == 'model' else name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
