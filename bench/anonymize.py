"""Does anonymisation leak? Leaked frames and over-blurred area for frame-by-frame blurring,
``hold``, ``lookahead``, ``every: 3`` with tracking and graphs/anonymize.yaml's settings;
and the tracker's cost per frame for 1, 10 and 50 faces. Prints tables and writes
bench/results/anonymize.json.

    python bench/anonymize.py [--videos ../shared/datasets/faces-video/*.mp4] [--seconds 6]

Clips: a made one whose truth is known (the astronaut's face drifting across a room; for 3
frames in every 30 she turns her head, 75 degrees, which MTCNN does not find), and any
``--videos``, whose truth is derived: MTCNN on every frame, tracked, with the frames a track
misses for up to half a second filled in between its boxes (where a face was, and the
detector did not say so). A frame leaks when the fine detail of some true face region is
still there: the correlation of the region's high-pass picture (the picture less its
Gaussian blur, sigma 1.5 px) before and after exceeds 0.5 (1 when untouched, about 0 when
blurred); over-blurred area is the share of pixels away from every true face (beyond the
blur's margin) that changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

from pipeline.app.memory import keep_freed_memory  # noqa: E402
from pipeline.core.frame import Detections, Frame  # noqa: E402
from pipeline.kit.testing import run_node  # noqa: E402
from plugins.track.tracker import Tracker, TrackerSettings  # noqa: E402

FPS = 30
#: a true face region whose detail correlates more than this with the input's is shown
LEAK_CORRELATION = 0.5
MARGIN = 0.3  # the blur's margin in graphs/anonymize.yaml
#: anonymize.yaml's detector thresholds: rather blur a non-face than miss a face
LOW_THRESHOLDS = (0.5, 0.6, 0.6)

#: mode -> (mtcnn parameters, track?, blur_faces parameters)
MODES: dict[str, tuple[dict[str, Any], bool, dict[str, Any]]] = {
    "frame by frame": ({}, False, {"hold": 0, "lookahead": 0}),
    "hold 0.5 s": ({}, True, {"hold": 0.5, "lookahead": 0}),
    "lookahead 2": ({}, False, {"hold": 0, "lookahead": 2}),
    "every 3 + track + hold": ({"every": 3}, True, {"hold": 0.5, "lookahead": 0}),
    "anonymize.yaml": ({"thresholds": LOW_THRESHOLDS}, True, {"hold": 0.5, "lookahead": 2}),
}


def made_clip(seconds: float) -> tuple[list[np.ndarray], list[list[list[float]]]]:
    """640x360 frames of a face drifting across a textured room, with its true boxes; the
    head turns away from the camera 3 frames in every 30."""
    from skimage import data

    face = cv2.resize(data.astronaut()[30:250, 130:330], (110, 121))
    rng = np.random.default_rng(0)
    room = cv2.GaussianBlur(rng.integers(60, 200, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    frames, truth = [], []
    for i in range(round(seconds * FPS)):
        t = i / FPS
        x = int(40 + 400 * (0.5 - 0.5 * np.cos(t * 0.9)))
        y = int(100 + 60 * np.sin(t * 1.3))
        patch = face
        if i % 30 in (10, 11, 12):  # a turned head: still a face, not found
            turn = cv2.getRotationMatrix2D((55, 60), 75, 1.0)
            patch = cv2.warpAffine(face, turn, (110, 121), borderMode=cv2.BORDER_REFLECT)
        img = room.copy()
        img[y:y + 121, x:x + 110] = patch
        frames.append(img)
        truth.append([[x + 27, y + 18, x + 77, y + 79]])  # where MTCNN finds her face
    return frames, truth


def read_video(path: Path, seconds: float) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        frames = []
        for vf in container.decode(video=0):
            frames.append(vf.to_ndarray(format="rgb24"))
            if len(frames) >= seconds * FPS:
                break
    return frames


def to_frames(images: list[np.ndarray]) -> list[Frame]:
    return [Frame.from_image(torch.from_numpy(np.ascontiguousarray(img)), pts=i,
                             time_base=Fraction(1, FPS), index=i, stream="clip")
            for i, img in enumerate(images)]


def derived_truth(images: list[np.ndarray], max_side: int | None) -> list[list[list[float]]]:
    """Every frame's faces: MTCNN on each frame, tracked, with each track's missed frames
    (up to 0.5 s) filled in between its boxes."""
    found = run_node("mtcnn", to_frames(images), max_side=max_side)
    tracker = Tracker(TrackerSettings(max_age=0.5))
    seen: dict[int, dict[int, list[float]]] = {}
    truth: list[list[list[float]]] = [[] for _ in images]
    for i, frame in enumerate(found):
        dets = frame.detections
        out, _ = tracker.step(i / FPS, i, dets.boxes.double().numpy(),
                              dets.scores.double().numpy())
        for box in out:
            if box.predicted:
                continue
            truth[i].append(box.box.tolist())
            if box.track_id is not None:
                seen.setdefault(box.track_id, {})[i] = box.box.tolist()
    for frames in seen.values():
        known = sorted(frames)
        for a, b in itertools.pairwise(known):
            for i in range(a + 1, b):  # a gap the detector left: the face was there
                w = (i - a) / (b - a)
                truth[i].append([(1 - w) * p + w * q for p, q in zip(frames[a], frames[b],
                                                                       strict=True)])
    return truth


def shown(before: np.ndarray, after: np.ndarray) -> bool:
    """Whether the fine detail of ``before`` (an RGB region) is still in ``after``."""
    def detail(region: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32)
        high = gray - cv2.GaussianBlur(gray, (0, 0), 1.5)
        return high - high.mean()

    a, b = detail(before), detail(after)
    scale = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return scale > 0 and float((a * b).sum()) / scale > LEAK_CORRELATION


def score(inputs: list[np.ndarray], outputs: list[Frame],
          truth: list[list[list[float]]]) -> tuple[int, int, float]:
    """(frames with a face, leaked frames, over-blurred share of the picture)."""
    with_face = leaked = 0
    over = []
    for img, frame, boxes in zip(inputs, outputs, truth, strict=True):
        out = frame.image.numpy()
        h, w = img.shape[:2]
        near = np.zeros((h, w), bool)
        leak = False
        for x1, y1, x2, y2 in boxes:
            a, b = max(0, int(x1)), max(0, int(y1))
            c, d = min(w, int(x2)), min(h, int(y2))
            if c - a < 4 or d - b < 4:
                continue
            leak |= shown(img[b:d, a:c], out[b:d, a:c])
            mx, my = (x2 - x1) * (MARGIN + 0.1), (y2 - y1) * (MARGIN + 0.1)
            near[max(0, int(y1 - my)):int(y2 + my), max(0, int(x1 - mx)):int(x2 + mx)] = True
        if boxes:
            with_face += 1
            leaked += leak
        changed = np.abs(out.astype(np.int16) - img).max(axis=2) > 10
        away = ~near
        over.append(float((changed & away).sum() / max(1, away.sum())))
    return with_face, leaked, float(np.mean(over))


def anonymise(images: list[np.ndarray], mode: str, max_side: int | None
              ) -> tuple[list[Frame], float]:
    detect, track, blur = MODES[mode]
    started = time.perf_counter()
    frames = run_node("mtcnn", to_frames(images), max_side=max_side, **detect)
    if track:
        frames = [f for f in run_node("track", frames) if isinstance(f, Frame)]
    out = run_node("blur_faces", frames, margin=MARGIN, **blur)
    return out, len(images) / (time.perf_counter() - started)


def box_agreement(dense: list[Frame], sparse: list[Frame]) -> tuple[float, int]:
    """(mean IoU, boxes matched) of the boxes of ``sparse`` (every 3 + track) against
    ``dense`` (every frame), matched frame by frame (Hungarian method on 1 - IoU)."""
    from scipy.optimize import linear_sum_assignment

    from plugins.track.tracker import iou

    overlaps: list[float] = []
    for a, b in zip(dense, sparse, strict=True):
        if not len(a.detections) or not len(b.detections):
            continue
        table = iou(a.detections.boxes.double().numpy(), b.detections.boxes.double().numpy())
        rows, cols = linear_sum_assignment(-table)
        overlaps += [float(table[r, c]) for r, c in zip(rows, cols, strict=True)
                     if table[r, c] > 0]
    return (float(np.mean(overlaps)) if overlaps else 0.0), len(overlaps)


def tracker_cost(faces: int, frames: int = 300) -> tuple[float, float]:
    """Median ms per frame: of the tracker alone, and of the ``track`` node (tensors in and
    out), for ``faces`` faces moving on a 1080p frame."""
    rng = np.random.default_rng(faces)
    start = rng.uniform([0, 0], [1800, 980], (faces, 2))
    speed = rng.uniform(-60, 60, (faces, 2))
    tracker = Tracker(TrackerSettings())
    alone, node_ms = [], []
    node_frames = []
    for i in range(frames):
        xy = start + speed * i / FPS
        boxes = np.concatenate([xy, xy + np.array([60, 72])], axis=1)
        scores = np.full(faces, 0.99)
        t0 = time.perf_counter()
        tracker.step(i / FPS, i, boxes, scores)
        alone.append(time.perf_counter() - t0)
        dets = Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores).float(),
                          torch.zeros(faces, 5, 2))
        node_frames.append(Frame.from_image(torch.zeros(8, 8, 3, dtype=torch.uint8), pts=i,
                                            time_base=Fraction(1, FPS), index=i, stream="s",
                                            meta={"detections": dets}))
    from pipeline.core.node import NodeContext
    from plugins.track.node import Track

    node = Track(Track.Params(), NodeContext("ids", torch.device("cpu")))
    node.open()
    for frame in node_frames:
        t0 = time.perf_counter()
        node.process(frame)
        node_ms.append(time.perf_counter() - t0)
    return (1000 * float(np.median(alone[30:])), 1000 * float(np.median(node_ms[30:])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="*", type=Path, default=[])
    parser.add_argument("--seconds", type=float, default=6.0, help="of each clip")
    parser.add_argument("--max-side", type=int, default=960, help="mtcnn's max_side")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    keep_freed_memory()
    clips: list[tuple[str, list[np.ndarray], list[list[list[float]]]]] = []
    images, truth = made_clip(args.seconds)
    clips.append(("made (turned head 3/30 frames)", images, truth))
    for path in args.videos:
        images = read_video(path, args.seconds)
        clips.append((path.name, images, derived_truth(images, args.max_side)))
    rows: list[dict[str, Any]] = []
    agreement: dict[str, dict[str, float]] = {}
    print(f"{'clip':42} {'mode':24} {'faces':>6} {'leaked':>7} {'over-blurred':>13} {'fps':>6}")
    for name, images, truth in clips:
        outputs = {}
        for mode in args.modes:
            out, fps = anonymise(images, mode, args.max_side)
            outputs[mode] = out
            with_face, leaked, over = score(images, out, truth)
            rows.append({"clip": name, "mode": mode, "frames_with_face": with_face,
                         "leaked": leaked, "over_blurred": round(over, 4), "fps": round(fps, 1)})
            print(f"{name[:42]:42} {mode:24} {with_face:>6} {leaked:>7} {100 * over:>12.2f}% "
                  f"{fps:>6.1f}")
        if {"frame by frame", "every 3 + track + hold"} <= outputs.keys():
            mean, matched = box_agreement(outputs["frame by frame"],
                                          outputs["every 3 + track + hold"])
            agreement[name] = {"mean_iou": round(mean, 3), "boxes": matched}
            print(f"{name[:42]:42} every 3 + track against every frame: mean IoU {mean:.3f} "
                  f"over {matched} boxes")
    costs = {}
    print(f"\n{'faces':>5} {'tracker ms':>11} {'track node ms':>14}")
    for faces in (1, 10, 50):
        alone, node = tracker_cost(faces)
        costs[faces] = {"tracker_ms": round(alone, 3), "node_ms": round(node, 3)}
        print(f"{faces:>5} {alone:>11.3f} {node:>14.3f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "anonymize.json").write_text(json.dumps({
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "rows": rows, "every_3_against_every_frame": agreement, "tracker_cost": costs},
        indent=2) + "\n")


if __name__ == "__main__":
    main()
