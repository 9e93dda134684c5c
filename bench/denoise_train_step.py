"""Training speed of the gray FFDNet sizes: patches per second through a training step
(forward, Charbonnier loss, backward, Adam) on a batch of 50x50 patches, in float32 and
in bfloat16 mixed precision (the trainer's ``--bf16``), side by side in one run.

    python bench/denoise_train_step.py [--threads 1] [--seconds 5] [--batch-size 64]

Sizes: the light 8 x 32, the earlier ``gray``'s 10 x 48, 10 x 64, the paper's 15 x 64 (the
shipped ``gray``'s) and 10 x 48 with a coarse branch of 4 x 96. bfloat16 runs only where
the CPU has it natively (AVX-512 BF16 or AMX), as the trainer's. Prints a table and
writes bench/results/denoise_train_step.json.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import rate, write_report  # noqa: E402
from pipeline.kit.training import mixed_precision  # noqa: E402
from plugins.denoise.model import FFDNet  # noqa: E402
from plugins.denoise.train import charbonnier, train_step  # noqa: E402

#: (layers, channels, coarse layers, coarse channels)
SIZES = [(8, 32, 0, 0), (10, 48, 0, 0), (10, 64, 0, 0), (15, 64, 0, 0), (10, 48, 4, 96)]


def step_of(net: FFDNet, bf16: bool, batch: int, patch: int) -> Callable[[], object]:
    """One training step of ``net`` on a fixed random batch: the trainer's own step."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 1, patch, patch, generator=generator)
    level = torch.rand(batch, generator=generator) * 0.3
    noisy = clean + torch.randn(clean.shape, generator=generator) * level.view(-1, 1, 1, 1)

    return lambda: train_step(net, optimizer, charbonnier, noisy, level, clean, bf16)


def main() -> int:
    """Measure every size in float32 and (where native) bfloat16; print and write them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patch", type=int, default=50)
    parser.add_argument("--json", default=str(ROOT / "bench/results/denoise_train_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    arithmetic = [False, True] if mixed_precision(device, cpu=True) else [False]
    rows = []
    print(f"{'size':<22}{'float32 patches/s':>19}{'bfloat16 patches/s':>20}{'ratio':>8}")
    for depth, features, coarse_depth, coarse_features in SIZES:
        torch.manual_seed(0)
        net = FFDNet(1, features, depth, coarse_features=coarse_features,
                     coarse_depth=coarse_depth)
        net.train()
        rates = [rate(step_of(net, bf16, args.batch_size, args.patch), args.batch_size,
                      args.seconds)
                 for bf16 in arithmetic]
        name = f"{depth} x {features}" + (f" + coarse {coarse_depth} x {coarse_features}"
                                          if coarse_depth else "")
        rows.append({"size": name, "float32": rates[0],
                     "bfloat16": rates[1] if len(rates) > 1 else None})
        ratio = f"{rates[1] / rates[0]:.2f}" if len(rates) > 1 else "-"
        shown = [f"{r:.1f}" for r in rates] + ["-"] * (2 - len(rates))
        print(f"{name:<22}{shown[0]:>19}{shown[1]:>20}{ratio:>8}", flush=True)
    write_report(args.json, device, rows, batch_size=args.batch_size, patch=args.patch,
                 native_bf16=len(arithmetic) > 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
