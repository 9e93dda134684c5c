"""MTCNN speed: frames per second by frame size and batch size, with where the time goes.

Frames are real: the astronaut portrait (one face) placed on frames of each size, and a
"crowd" of 12 copies of her at several sizes on a 1080p frame. Prints a table and writes
bench/results/mtcnn.json.

    python bench/mtcnn.py [--device cuda] [--seconds 3] [--batches 1 8 32] [--reference]
                          [--malloc keep|default]

``--reference`` measures facenet-pytorch's MTCNN side by side, in the same run on the same
frames, and checks that both find the same faces (count, and IoU of matched boxes). It is
not a dependency of ours; it pins old torch releases, so put it in a separate venv:

    python -m venv .venv-ref && .venv-ref/bin/pip install torch==2.14.1 torchvision==0.29.1
    .venv-ref/bin/pip install --no-deps facenet-pytorch && .venv-ref/bin/pip install requests -e .
    .venv-ref/bin/python bench/mtcnn.py --reference --batches 1
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: this file would shadow the mtcnn package

from bench.timing import rate  # noqa: E402
from pipeline.app.memory import keep_freed_memory  # noqa: E402
from plugins.mtcnn.detector import Detector  # noqa: E402
from plugins.mtcnn.nms import box_iou  # noqa: E402

SIZES = {"640x480": (480, 640), "1280x720": (720, 1280), "1920x1080": (1080, 1920)}


def portrait() -> np.ndarray:
    image = cv2.imread(str(ROOT / "plugins" / "media" / "data" / "astronaut.jpg"))
    return np.ascontiguousarray(image[:, :, ::-1])


def one_face(size: tuple[int, int]) -> np.ndarray:
    h, w = size
    canvas = np.full((h, w, 3), 118, np.uint8)
    side = min(h, 512)
    photo = cv2.resize(portrait(), (side, side))
    canvas[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side] = photo
    return canvas


def crowd() -> np.ndarray:
    canvas = np.full((1080, 1920, 3), 118, np.uint8)
    photo = portrait()
    for k in range(12):
        side = (160, 240, 320)[k % 3]
        y, x = (k // 6) * 540 + 20, (k % 6) * 320
        canvas[y:y + side, x:x + side] = cv2.resize(photo, (side, side))
    return canvas


def timed(detector: Detector, totals: dict[str, float]) -> None:
    """Wrap the cascade's steps to add up their time (synchronising on CUDA)."""
    for step in ("_propose", "_refine", "_output"):
        inner: Callable[..., Any] = getattr(detector, step)

        def wrapper(*args: Any, _inner: Callable[..., Any] = inner, _step: str = step) -> Any:
            if detector.device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            result = _inner(*args)
            if detector.device.type == "cuda":
                torch.cuda.synchronize()
            totals[_step] += time.perf_counter() - started
            return result

        setattr(detector, step, wrapper)


def measure(detector: Detector, frame: np.ndarray, batch: int, seconds: float,
            totals: dict[str, float]) -> dict[str, Any]:
    images = torch.from_numpy(np.stack([frame] * batch)).to(detector.device)
    faces = len(detector.detect(images)[0])
    totals.clear()
    started = time.perf_counter()
    fps = rate(lambda: detector.detect(images), batch, seconds)
    elapsed = time.perf_counter() - started
    share = {k.strip("_"): round(v / elapsed, 3) for k, v in totals.items()}
    return {"fps": fps, "faces_per_frame": faces, "time_share": share}


def versus_reference(detector: Detector, reference: Any, frame: np.ndarray, batch: int,
                     seconds: float) -> dict[str, Any]:
    """facenet-pytorch on the same frames: its fps, and whether it finds the same faces."""
    ours = detector.detect(torch.from_numpy(frame[None]).to(detector.device))[0].boxes.cpu()
    found, _ = reference.detect(frame)
    theirs = torch.tensor(np.asarray(found if found is not None else np.zeros((0, 4)),
                                     dtype=np.float32))
    iou = box_iou(ours, theirs).amax(1) if len(ours) and len(theirs) else torch.zeros(0)
    stack = np.stack([frame] * batch)
    return {"reference_fps": rate(lambda: reference.detect(stack), batch, seconds),
            "reference_faces": len(theirs), "same_faces": len(ours) == len(theirs),
            "min_iou": round(float(iou.min()), 3) if len(iou) else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--half", action="store_true", help="fp16 (CUDA)")
    parser.add_argument("--reference", action="store_true",
                        help="measure facenet-pytorch's MTCNN side by side")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep freed memory for reuse, as `vidgraph run` does (default), "
                        "or glibc's defaults; either way for both detectors")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "mtcnn.json"))
    args = parser.parse_args()
    kept = args.malloc == "keep" and keep_freed_memory()
    device = torch.device(args.device)
    detector = Detector(device, half=args.half)
    totals: dict[str, float] = defaultdict(float)
    timed(detector, totals)
    reference = None
    if args.reference:
        from facenet_pytorch import MTCNN

        reference = MTCNN(keep_all=True, device=device, post_process=False)
    frames = {name: one_face(size) for name, size in SIZES.items()}
    frames["1920x1080 crowd"] = crowd()
    rows = []
    for name, frame in frames.items():
        for batch in args.batches:
            result = measure(detector, frame, batch, args.seconds, totals)
            line = (f"{name:16} batch {batch:3}: {result['fps']:8.1f} fps  "
                    f"{result['faces_per_frame']} faces  {result['time_share']}")
            if reference is not None:
                result |= versus_reference(detector, reference, frame, batch, args.seconds)
                line += (f"  | facenet-pytorch {result['reference_fps']:.1f} fps "
                         f"(x{result['fps'] / result['reference_fps']:.2f}), same faces: "
                         f"{result['same_faces']}, min IoU {result['min_iou']}")
            rows.append({"frames": name, "batch": batch, **result})
            print(line, flush=True)
    report = {"device": str(device), "half": args.half, "torch_threads":
              torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "torch": torch.__version__, "freed_memory_kept": kept,
              "settings": {"min_face": 20, "thresholds": [0.6, 0.7, 0.7],
                           "scale_factor": 0.709}, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
