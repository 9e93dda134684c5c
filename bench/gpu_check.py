"""What a lent GPU machine should measure, in one run; each part runs on its own, so one
that fails is recorded with its error and the rest still run.

- ``models``: style (the shipped light network and the paper's full-width one), denoise
  (light and full FFDNet), classify (the expression model) and MTCNN, in fp32, fp16 and
  bf16: frames per second, peak GPU memory, and host syncs per call (counted by
  ``torch.cuda.set_sync_debug_mode``).
- ``agreement``: fp16 and bf16 against fp32 on the same frames: MTCNN's faces on 32
  1080p crowd frames (count and IoU), the pictures of style and denoise (PSNR).
- ``graphs``: ``graphs/anonymize.yaml``, ``stylize_file.yaml`` and ``denoise_file.yaml``
  on a 1080p clip made here: frames per second of the whole run, peak GPU memory, syncs.

Writes ``gpu_check.json`` and ``gpu_check.md`` under ``--out``.

    python bench/gpu_check.py --out DIR          # on the GPU machine, by bench/gpu_check.sh
    python bench/gpu_check.py --out DIR --quick  # small and short: a check of this script
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/mtcnn.py would shadow the mtcnn package

from bench.timing import rate  # noqa: E402
from pipeline.kit.images import to_float  # noqa: E402
from pipeline.kit.testing import run_graph  # noqa: E402
from plugins.denoise.apply import denoise_rgb  # noqa: E402
from plugins.denoise.apply import load as load_denoiser  # noqa: E402
from plugins.media.clips import make_clip  # noqa: E402
from plugins.mtcnn.detector import Detector  # noqa: E402
from plugins.mtcnn.nms import box_iou  # noqa: E402
from plugins.senet import checkpoint as classifiers  # noqa: E402
from plugins.style import checkpoint as styles  # noqa: E402
from plugins.style.model import JohnsonNet  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def portrait() -> np.ndarray:
    """The repository's astronaut photo, RGB."""
    image = cv2.imread(str(ROOT / "plugins" / "media" / "data" / "astronaut.jpg"))
    return np.ascontiguousarray(image[:, :, ::-1])


def crowd(height: int, width: int) -> np.ndarray:
    """12 copies of the astronaut, 160 to 320 px (scaled with the frame), on grey."""
    canvas = np.full((height, width, 3), 118, np.uint8)
    scale = height / 1080
    for k in range(12):
        side = max(24, round((160, 240, 320)[k % 3] * scale))
        y, x = round(((k // 6) * 540 + 20) * scale), round((k % 6) * 320 * scale)
        canvas[y:y + side, x:x + side] = cv2.resize(portrait(), (side, side))[
            :height - y, :width - x]
    return canvas


class Check:
    """The settings of one run and the sync and memory readings every part shares."""

    def __init__(self, device: torch.device, quick: bool, dtypes: list[str]) -> None:
        self.device = device
        self.quick = quick
        self.dtypes = {name: DTYPES[name] for name in dtypes}
        self.size = (180, 320) if quick else (1080, 1920)
        self.seconds = 0.3 if quick else 2.0
        self.cuda = device.type == "cuda"

    def frames(self, count: int) -> torch.Tensor:
        """``count`` crowd frames, uint8 NHWC, on the device."""
        picture = torch.from_numpy(crowd(*self.size))
        return picture[None].expand(count, -1, -1, -1).contiguous().to(self.device)

    @contextmanager
    def watched(self, into: dict[str, Any], calls: int = 1) -> Iterator[None]:
        """Peak GPU memory (MiB) and host syncs per call of the block, into ``into``."""
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.cuda:
                torch.cuda.set_sync_debug_mode("warn")
            try:
                yield
            finally:
                if self.cuda:
                    torch.cuda.set_sync_debug_mode("default")
        if self.cuda:
            torch.cuda.synchronize()
            into["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
            syncs = sum("synchronizing" in str(w.message) for w in caught)
            into["syncs_per_call"] = round(syncs / calls, 1)


def _style(check: Check, dtype: torch.dtype, full: bool) -> Callable[[torch.Tensor], Any]:
    net = JohnsonNet() if full else styles.load("wave-light")[0]
    net = net.to(check.device, dtype).eval()
    if check.cuda and dtype != torch.float32:
        net = net.to(memory_format=torch.channels_last)
    return lambda frames: net(to_float(frames, dtype=dtype))


def _denoise(check: Check, dtype: torch.dtype, model: str) -> Callable[[torch.Tensor], Any]:
    net = load_denoiser(model)[0].to(check.device, dtype).eval()
    return lambda frames: denoise_rgb(
        net, to_float(frames, dtype=dtype),
        torch.full((len(frames),), 25 / 255, device=frames.device, dtype=dtype), 512)


def _classify(check: Check, dtype: torch.dtype) -> Callable[[torch.Tensor], Any]:
    model = classifiers.load("expression", None, None)
    model.net.to(check.device, dtype).eval()
    return lambda chips: model.probabilities(model.prepare(chips, dtype), 256, True)


def models(check: Check) -> list[dict[str, Any]]:
    """Speed, memory and syncs of each model in each dtype."""
    rows = []
    batch = 2 if check.quick else 4
    chips = torch.from_numpy(cv2.resize(portrait(), (48, 48)))[None].expand(
        16 if check.quick else 256, -1, -1, -1).contiguous().to(check.device)
    for name, dtype in check.dtypes.items():
        makers: dict[str, tuple[Callable[[], Callable[[torch.Tensor], Any]], torch.Tensor]] = {
            "style wave-light": (lambda d=dtype: _style(check, d, False), check.frames(batch)),
            "style johnson (full)": (lambda d=dtype: _style(check, d, True),
                                     check.frames(batch)),
            "denoise color-light": (lambda d=dtype: _denoise(check, d, "color-light"),
                                    check.frames(batch)),
            "denoise color": (lambda d=dtype: _denoise(check, d, "color"),
                              check.frames(batch)),
            "classify expression": (lambda d=dtype: _classify(check, d), chips),
            "mtcnn crowd": (lambda d=dtype: Detector(check.device, dtype=d).detect,
                            check.frames(8)),
        }
        for model, (make, inputs) in makers.items():
            row: dict[str, Any] = {"model": model, "dtype": name, "batch": len(inputs),
                                   "size": "x".join(map(str, inputs.shape[1:3]))}
            try:
                run = make()
                with torch.inference_mode():
                    run(inputs)
                    with check.watched(row):
                        run(inputs)
                    row["fps"] = rate(lambda r=run, x=inputs: r(x), len(inputs), check.seconds)
            except Exception as exc:  # a dtype a model cannot run in is a finding too
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return round(10 * np.log10(1 / max(mse, 1e-12)), 2)


def agreement(check: Check) -> list[dict[str, Any]]:
    """fp16 and bf16 against fp32 on the same frames."""
    rows = []
    crowd_frames = check.frames(4 if check.quick else 32)
    pictures = check.frames(2 if check.quick else 4)
    with torch.inference_mode():
        want = Detector(check.device).detect(crowd_frames)
        nets = {"style wave-light": lambda d: _style(check, d, False),
                "denoise color-light": lambda d: _denoise(check, d, "color-light")}
        reference = {n: make(torch.float32)(pictures).float().clamp(0, 1)
                     for n, make in nets.items()}
        for name in [n for n in check.dtypes if n != "fp32"]:
            found = Detector(check.device, dtype=DTYPES[name]).detect(crowd_frames)
            ious = [float(box_iou(a.boxes.cpu(), b.boxes.cpu()).amax(1).mean())
                    for a, b in zip(want, found, strict=True) if len(a) and len(b)]
            rows.append({"model": "mtcnn crowd", "dtype": name, "frames": len(crowd_frames),
                         "same_count": all(len(a) == len(b)
                                           for a, b in zip(want, found, strict=True)),
                         "faces_fp32": sum(len(a) for a in want),
                         "faces": sum(len(b) for b in found),
                         "mean_iou": round(float(np.mean(ious)), 4) if ious else None})
            for model, make in nets.items():
                out = make(DTYPES[name])(pictures).float().clamp(0, 1)
                rows.append({"model": model, "dtype": name, "frames": len(pictures),
                             "psnr_vs_fp32": _psnr(out, reference[model])})
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def graphs(check: Check, work: Path) -> list[dict[str, Any]]:
    """The shipped graphs, whole, on a clip made here (the astronaut drifting on grey)."""
    height, width = check.size
    seconds = 0.5 if check.quick else 4.0
    picture = crowd(height, width)
    clip = make_clip(work / "input.mp4", seconds=seconds, width=width, height=height,
                     pictures=lambda i: np.roll(picture, 4 * i, axis=1))
    rows = []
    for graph, env in (("anonymize", {}), ("stylize_file", {"STYLE": "wave-light"}),
                       ("denoise_file", {})):
        row: dict[str, Any] = {"graph": graph, "size": f"{width}x{height}",
                               "frames": round(seconds * 30)}
        os.environ.update(INPUT=str(clip), OUTPUT=str(work / f"{graph}.mp4"), **env)
        try:
            text = (ROOT / "graphs" / f"{graph}.yaml").read_text()
            with check.watched(row, calls=row["frames"]):
                started = time.perf_counter()
                result = run_graph(text, overrides=[f"device={check.device}"])
                row["seconds"] = round(time.perf_counter() - started, 2)
            row["status"] = str(result.status.value if hasattr(result.status, "value")
                                else result.status)
            row["fps"] = round(row["frames"] / row["seconds"], 1)
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables, one per part."""
    lines = [f"# GPU check: {report['gpu'] or report['device']}, torch {report['torch']}", ""]
    for part, rows in report["parts"].items():
        lines += [f"## {part}", ""]
        if isinstance(rows, dict):  # the part failed as a whole
            lines += [f"failed: {rows['error']}", ""]
            continue
        if not rows:
            lines += ["nothing measured (fp32 alone has nothing to agree with)", ""]
            continue
        columns = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |"
                  for row in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small frames, short timings")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                        help="default: all three on CUDA; fp32 on the CPU, where half "
                        "precision is emulated and slow")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtypes = args.dtypes or (list(DTYPES) if device.type == "cuda" else ["fp32"])
    check = Check(device, args.quick, dtypes)
    report: dict[str, Any] = {
        "device": str(check.device), "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(check.device) if check.cuda else None,
        "quick": args.quick, "parts": {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        parts: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "models": lambda: models(check), "agreement": lambda: agreement(check),
            "graphs": lambda: graphs(check, Path(work))}
        for name, part in parts.items():
            started = time.perf_counter()
            try:
                report["parts"][name] = part()
            except Exception as exc:
                traceback.print_exc()
                report["parts"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"{name}: {time.perf_counter() - started:.0f} s", flush=True)
            # written after every part: a run cut short still leaves what it measured
            (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
            (out / "gpu_check.md").write_text(markdown(report))
    failed = [n for n, rows in report["parts"].items() if isinstance(rows, dict)]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
