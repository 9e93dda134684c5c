"""Classifier speed: pictures per second for the shipped expression model (48x48 gray face
chips, through its test-time views and once per picture) and SE-ResNet-50 (224x224 RGB),
by batch size, preprocessing included.

    python bench/classify.py [--device cuda] [--half] [--batches 1 32 256] [--seconds 3]

Prints a table and writes bench/results/classify.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from bench.timing import rate, write_report  # noqa: E402
from plugins.senet import checkpoint  # noqa: E402
from plugins.senet.model import se_resnet  # noqa: E402


def models() -> dict[str, tuple[checkpoint.Classifier, bool]]:
    """The shipped expression model with and without its test-time views, and SE-ResNet-50
    with ImageNet's shape (random weights: speed does not depend on them)."""
    net = se_resnet(50, 1000, 3).eval()
    expression = checkpoint.load("expression")
    return {"expression, views (48x48)": (expression, True),
            "expression, one view": (expression, False),
            "se_resnet50 (224x224 RGB)": (checkpoint.Classifier(
                net, "se_resnet50", {}, [str(i) for i in range(1000)],
                dict(checkpoint.IMAGENET)), False)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--half", action="store_true", help="fp16 (CUDA)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "classify.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if args.half and device.type == "cuda" else torch.float32
    rows = []
    for name, (model, views) in models().items():
        model.net.to(device, dtype).to(memory_format=torch.channels_last)
        channels = 1 if model.gray else 3
        for batch in args.batches:
            pictures = torch.randint(0, 256, (batch, model.size, model.size, channels),
                                     dtype=torch.uint8, device=device)

            @torch.inference_mode()
            def run(pictures: torch.Tensor = pictures, model: checkpoint.Classifier = model,
                    views: bool = views) -> None:
                model.probabilities(model.prepare(pictures, dtype), views=views).argmax(1).cpu()

            per_second = rate(run, batch, args.seconds)
            rows.append({"model": name, "batch": batch, "per_second": per_second})
            print(f"{name:26} batch {batch:4}: {per_second:9.1f} pictures/s", flush=True)
    write_report(args.json, device, rows, half=args.half)
    return 0


if __name__ == "__main__":
    sys.exit(main())
