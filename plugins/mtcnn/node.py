"""``mtcnn``: find faces (boxes, scores, five landmarks) in frames, batched."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.frame import Detections, Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.batching import group_by_size
from pipeline.kit.images import shrunk_size, to_float, to_uint8

from .detector import Detector


class MtcnnParams(Params):
    """Parameters of ``mtcnn``."""

    min_face: float = Field(20.0, ge=8, description="smallest face to look for, in pixels "
                            "(of the picture detection runs on, see max_side)")
    thresholds: tuple[float, float, float] = Field(
        (0.6, 0.7, 0.7), description="face probability each net (P, R, O) must exceed")
    scale_factor: float = Field(0.709, gt=0.1, lt=0.95, description="pyramid step")
    max_side: int | None = Field(None, ge=48, description="detect on a copy scaled so its "
                                 "longer side is at most this (boxes mapped back)")
    every: int = Field(1, ge=1, description="detect every N frames of a stream; the frames "
                       "between keep the last result (meta detected: false; a track node "
                       "after gives them predicted boxes)")
    half: bool = Field(False, description="fp16 on CUDA")


class Mtcnn(Stage):
    """Detects faces with MTCNN (Zhang et al. 2016) and puts ``Detections`` on each frame:
    boxes, scores and landmarks (left eye, right eye, nose, mouth corners). Frames of all
    streams in a batch (``batch_size``, 8 unless the graph says) go through the cascade
    together. The weights are the original ones, read from the ``mtcnn`` package.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 320, height: 180, duration: 0.2}
      faces: {plugin: mtcnn, input: src, batch_size: 4}
      out: {plugin: jsonl_sink, input: faces, path: out/doc_faces.jsonl}
    ```
    """

    name = "mtcnn"
    summary = "find faces: boxes, scores, five landmarks (MTCNN, batched)"
    Params = MtcnnParams
    params: MtcnnParams
    # 720p on 2 CPU cores: 19.5 frames/s one by one, 26.5 in eights; a live camera waits
    # at most batch_timeout_ms for a batch that does not fill
    batch_size = 8
    stream_state = ("last",)  # every: N repeats a stream's last detections

    def open(self) -> None:
        p = self.params
        self.detector = Detector(self.device, min_face=p.min_face, thresholds=p.thresholds,
                                 scale_factor=p.scale_factor, half=p.half)
        self.last: dict[str, tuple[int, Detections]] = {}  # stream -> (index, detections)

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        found: dict[int, Detections] = {}
        todo: list[int] = []  # the frames detection runs on (the others: meta detected false)
        # each stream's latest frame detection runs on: (its index, its place in this
        # batch, or None for one of an earlier batch), so `every` holds within a batch too
        earlier = dict(self.last)
        latest: dict[str, tuple[int, int | None]] = {
            stream: (index, None) for stream, (index, _) in earlier.items()}
        reuse: dict[int, int | None] = {}
        for i, frame in enumerate(frames):
            before = latest.get(frame.stream)
            if before is not None and frame.index - before[0] < self.params.every:
                reuse[i] = before[1]
            else:
                todo.append(i)
                latest[frame.stream] = (frame.index, i)
        for group in group_by_size([frames[i] for i in todo]).values():
            indices = [todo[j] for j in group]
            images = torch.stack([frames[i].image for i in indices])
            for i, dets in zip(indices, self._detect(images), strict=True):
                found[i] = dets
        for i in todo:  # in frame order: each stream keeps its latest
            self.last[frames[i].stream] = (frames[i].index, found[i])
        for i, place in reuse.items():
            found[i] = earlier[frames[i].stream][1] if place is None else found[place]
        ran = set(todo)
        return [f.with_meta(detections=found[i], detected=i in ran)
                for i, f in enumerate(frames)]

    def _detect(self, images: torch.Tensor) -> list[Detections]:
        height, width = images.shape[1:3]
        side = self.params.max_side
        size = shrunk_size(height, width, side)
        if side is None or size is None:
            return self.detector.detect(images.contiguous())
        factor = side / max(height, width)
        small = F.interpolate(to_float(images, 1), size=size, mode="bilinear", antialias=True,
                              align_corners=False)
        results = self.detector.detect(to_uint8(small, 1))
        return [Detections(d.boxes / factor, d.scores, None if d.landmarks is None
                           else d.landmarks / factor) for d in results]
