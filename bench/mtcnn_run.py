"""MTCNN as a user meets it: the whole ``vidgraph run`` of a graph that decodes a 60-frame
720p clip with one face and detects in every frame, against the same job written with
facenet-pytorch (decode with PyAV, ``MTCNN.detect`` on every frame), each a fresh process
(start-up included), alternated in one run.

    python bench/mtcnn_run.py --reference-python .venv-ref/bin/python [--runs 5]

The reference interpreter holds facenet-pytorch (see bench/mtcnn.py for how to make it).
vidgraph's time is also split into its start-up (``vidgraph validate`` of the same graph:
imports and plugin discovery), the graph's own run (``--stats``) and the rest (opening the
nodes, closing). Prints a table and writes bench/results/mtcnn_run.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/mtcnn.py would shadow the mtcnn package

from plugins.media.clips import make_clip  # noqa: E402

GRAPH = """
nodes:
  src: {{plugin: video_source, url: {clip}}}
  faces: {{plugin: mtcnn, input: src}}
  log: {{plugin: jsonl_sink, input: faces, path: {log}}}
"""

REFERENCE = """
import sys
import av
from facenet_pytorch import MTCNN
detector = MTCNN(keep_all=True, device="cpu")
found = 0
with av.open(sys.argv[1]) as container:
    for frame in container.decode(video=0):
        boxes, _ = detector.detect(frame.to_ndarray(format="rgb24"))
        found += boxes is not None and len(boxes) == 1
print(found)
"""


def clip(path: Path) -> Path:
    """60 frames of 1280x720 at 30 fps: the astronaut's face (300 px) drifting on grey."""
    face = cv2.resize(cv2.imread(str(ROOT / "plugins" / "media" / "data" / "astronaut.jpg")),
                      (300, 300))[:, :, ::-1]

    def picture(i: int) -> np.ndarray:
        canvas = np.full((720, 1280, 3), 118, np.uint8)
        canvas[200:500, 200 + 8 * i:500 + 8 * i] = face
        return canvas

    return make_clip(path, seconds=2.0, width=1280, height=720, pictures=picture)


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "mtcnn_run.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        video = clip(Path(work) / "face.mp4")
        graph = Path(work) / "faces.yaml"
        log, stats = Path(work) / "faces.jsonl", Path(work) / "stats.json"
        graph.write_text(GRAPH.format(clip=video, log=log))
        ours = [sys.executable, str(ROOT / "run.py"), "run", "-q", str(graph),
                "--stats", str(stats)]
        theirs = [args.reference_python, "-c", REFERENCE, str(video)]
        start_up = [sys.executable, str(ROOT / "run.py"), "validate", str(graph)]
        times: dict[str, list[float]] = {"vidgraph": [], "facenet-pytorch": [],
                                         "vidgraph start-up": [], "vidgraph graph run": []}
        timed(ours), timed(theirs)  # warm the file caches (and numba's)
        faces = 0
        for _ in range(args.runs):
            wall, _ = timed(ours)
            times["vidgraph"].append(wall)
            times["vidgraph graph run"].append(json.loads(stats.read_text())["elapsed_s"])
            faces = sum(len(json.loads(line)["detections"]) == 1
                        for line in log.read_text().splitlines())
            wall, out = timed(theirs)
            times["facenet-pytorch"].append(wall)
            times["vidgraph start-up"].append(timed(start_up)[0])
            assert faces == int(out), f"vidgraph found the face in {faces} frames, " \
                f"facenet-pytorch in {out.strip()}"
    median = {k: round(statistics.median(v), 3) for k, v in times.items()}
    ratio = round(median["facenet-pytorch"] / median["vidgraph"], 2)
    for name, value in median.items():
        print(f"{name:20s} {value:7.3f} s  (runs: {', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"facenet-pytorch / vidgraph: {ratio}x (each found one face in {faces} of 60 "
          "frames)")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"median_s": median, "runs_s": times,
                                           "ratio": ratio, "frames_with_the_face": faces},
                                          indent=2) + "\n")


if __name__ == "__main__":
    main()
