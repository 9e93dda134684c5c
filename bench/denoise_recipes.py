"""Denoiser training recipes side by side: one short training per recipe, each changing
one choice of a base recipe (patch size, noise-level range, noisy patches rounded to 8
bits or not, learning rate and its schedule, loss, width and depth, residual output), all
with the same iterations, data and seed; each best checkpoint is then scored on a test
set as 8-bit noisy files. The table says what a choice is worth for the time it costs,
before a long run commits to it (plugins/denoise/MODELS.md keeps the results).

    python bench/denoise_recipes.py ../shared/datasets/denoise/Train400 \\
        --test ../shared/datasets/denoise/BSD68 --channels 1 --iterations 3000

Prints a Markdown table and writes bench/results/denoise_recipes.json (and the
checkpoints under --work, which a rerun reuses).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: the base recipe: the light models' (FFDNet 8 x 32 on 50x50 patches, levels 0-75)
BASE = {"--features": "32", "--depth": "8", "--patch": "50", "--sigma-max": "75",
        "--lr": "1e-3", "--seed": "0"}
#: each recipe: what it changes in the base
RECIPES: dict[str, dict[str, str]] = {
    "base": {},
    "seed 1": {"--seed": "1"},  # how far chance alone moves a figure
    "patch 35": {"--patch": "35"},
    "patch 70": {"--patch": "70"},
    "levels 0-55": {"--sigma-max": "55"},
    "lr 5e-4": {"--lr": "5e-4"},
    "lr 2e-3": {"--lr": "2e-3"},
    "6 x 48": {"--features": "48", "--depth": "6"},
    "12 x 24": {"--features": "24", "--depth": "12"},
    "step schedule": {"--schedule": "step"},
    "constant rate": {"--schedule": "constant"},
    "L1 loss": {"--loss": "l1"},
    "Charbonnier loss": {"--loss": "charbonnier"},
    "PSNR loss": {"--loss": "psnr"},
    "8-bit noise": {"--quantize": ""},  # a flag: no value
    "residual": {"--residual": ""},
}


def train(data: list[str], out: Path, recipe: dict[str, str], args: argparse.Namespace
          ) -> float:
    """Train one recipe into ``out`` (skipped when a finished one is there); its wall
    minutes, the process's start included."""
    done = out.with_suffix(".json")  # written once the training finished
    if done.exists():
        return float(json.loads(done.read_text())["minutes"])
    options = {**BASE, **recipe}
    command = [sys.executable, str(ROOT / "run.py"), "train", "denoise", *data,
               "--out", str(out), "--arch", "ffdnet", "--channels", str(args.channels),
               "--batch-size", "64", "--iterations", str(args.iterations),
               "--val-every", str(max(1, args.iterations // 4)),
               "--threads", str(args.threads),
               *(part for pair in options.items() for part in pair if part)]
    start = time.monotonic()
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    minutes = (time.monotonic() - start) / 60
    done.write_text(json.dumps({"minutes": minutes, "options": options}))
    return minutes


def score(test: str, model: Path, args: argparse.Namespace) -> float:
    """PSNR of ``model`` on ``test`` at --sigma, as 8-bit noisy files."""
    table = model.with_suffix(".eval.json")
    subprocess.run([sys.executable, str(ROOT / "run.py"), "eval", "denoise", "--data", test,
                    "--channels", str(args.channels), "--sigma", str(args.sigma),
                    "--model", str(model), "--baselines", "none", "--json", str(table)],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    rows = json.loads(table.read_text())
    return next(float(r["psnr"]) for r in rows if r["method"] != "noisy input")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", help="training folders")
    parser.add_argument("--test", required=True, help="folder of clean test pictures")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1)
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--sigma", type=float, default=25.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", default=",".join(RECIPES),
                        help="comma-separated names among: " + ", ".join(RECIPES))
    parser.add_argument("--work", default=str(ROOT / "bench" / "results" / "recipes"))
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" /
                                              "denoise_recipes.json"))
    args = parser.parse_args()
    names = args.recipes.split(",")
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(unknown)}")
    work = Path(args.work) / f"c{args.channels}-i{args.iterations}"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for name in names:
        model = work / (name.replace(" ", "_") + ".pt")
        minutes = train(args.data, model, RECIPES[name], args)
        results.append({"recipe": name, "changes": RECIPES[name], "minutes": round(minutes, 1),
                        "psnr": round(score(args.test, model, args), 2)})
        print(f"{name}: {results[-1]['psnr']:.2f} dB, {minutes:.1f} min", flush=True)
    base = next((r["psnr"] for r in results if r["recipe"] == "base"), None)
    print(f"\n| recipe | wall minutes | PSNR at sigma {args.sigma:g} | against base |")
    print("|---|---|---|---|")
    for r in results:
        delta = "" if base is None else f"{r['psnr'] - base:+.2f}"
        print(f"| {r['recipe']} | {r['minutes']} | {r['psnr']:.2f} | {delta} |")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"iterations": args.iterations, "sigma": args.sigma,
                                           "channels": args.channels, "data": args.data,
                                           "test": args.test, "results": results},
                                          indent=2) + "\n")


if __name__ == "__main__":
    main()
