"""Operations and host syncs per frame of each model node, on the tensor code a GPU runs.

    python bench/dispatch.py [--batch 8] [--out bench/results/dispatch.json]

Each node gets a batch of 1080p frames (12 faces of 160 to 320 px, with their boxes and
landmarks where the node reads detections) and runs it once to warm up, then once counted
(`pipeline.kit.counting`) under `pipeline.core.device.tensor_code`, which makes the CPU take
the GPU's branch. On a GPU each operation is at least one kernel launch and each sync a
stall of the CPU; both are costs a GPU cannot hide behind its speed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/mtcnn.py would shadow the mtcnn package

from pipeline.core.frame import Frame  # noqa: E402
from pipeline.core.registry import Registry  # noqa: E402
from pipeline.kit.counting import count_node  # noqa: E402
from tests.pictures import crowd  # noqa: E402

#: each node and its parameters; "faces": its frames carry the crowd's detections
NODES: list[tuple[str, dict[str, Any], bool]] = [
    ("mtcnn", {}, False),
    ("blur_faces", {}, True),
    ("draw", {}, True),
    ("face_crops", {}, True),
    ("denoise", {"model": "color-light", "sigma": 25}, False),
    ("style_transfer", {"model": "wave-light"}, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", default="bench/results/dispatch.json")
    args = parser.parse_args()
    picture, faces = crowd()
    registry = Registry.from_entry_points()
    rows = []
    for plugin, params, with_faces in NODES:
        frames = [Frame.from_image(torch.from_numpy(picture.copy()), index=i, stream="cam",
                                   meta={"detections": faces} if with_faces else {})
                  for i in range(args.batch)]
        rows.append(count_node(plugin, frames, registry, **params))
        print(f"{plugin:16s} {rows[-1]['ops']:8.1f} ops {rows[-1]['syncs']:6.1f} syncs per "
              f"frame  {rows[-1]['syncs_by_kind']}", flush=True)
    Path(args.out).write_text(json.dumps({"batch": args.batch, "frames": "1920x1080",
                                          "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
