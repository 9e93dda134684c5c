"""``classify``: label whole frames or detected faces with an SE-ResNet classifier."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from pydantic import Field

from pipeline.core.device import inference_dtype
from pipeline.core.errors import VidgraphError
from pipeline.core.frame import Detections, Frame
from pipeline.core.node import Stage
from pipeline.kit.compiling import CompileParams, compiled

from . import checkpoint


class ClassifyParams(CompileParams):
    """Parameters of ``classify``."""

    model: str = Field("expression", description="built-in model (expression), a checkpoint "
                       "from `vidgraph train classify`, or an architecture (se_resnet50) "
                       "with 'weights'")
    weights: str | None = Field(None, description="state dict for an architecture name "
                                "(timm's seresnet layout)")
    classes: list[str] | None = Field(None, description="class names for 'weights' "
                                      "(default class0, class1, ...)")
    on: Literal["frame", "detections"] = Field(
        "frame", description="classify whole frames, or the face crops of each detection")
    topk: int = Field(3, ge=1, description="how many best classes to keep with their scores")
    chunk: int = Field(256, ge=1, description="most pictures per forward pass")
    half: bool = Field(False, description="fp16 on CUDA")
    views: bool = Field(True, description="average over the checkpoint's test-time views "
                        "(crops and mirror images, see MODELS.md); false reads each picture "
                        "once, up to 12 times cheaper and a little less accurate")


class Classify(Stage):
    """Puts ``label``, ``label_score`` and the ``topk`` best ``scores`` on each frame, or
    on each detection (``on: detections``, reading the ``crops`` of ``face_crops``): its
    ``labels``, ``label_scores`` and, as the extra field ``topk``, a dict of the best
    classes and their probabilities per box. All
    pictures of a batch (``batch_size`` frames, every face of every frame, all streams) go
    through the network together. A checkpoint carries its class names and preprocessing.

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 160, height: 120, duration: 0.2}
      faces: {plugin: mtcnn, input: src}
      chips: {plugin: face_crops, input: faces, size: 48, gray: true,
              template: fer2013}
      mood: {plugin: classify, input: chips, model: expression, on: detections}
      out: {plugin: null_sink, input: mood}
    ```
    """

    name = "classify"
    summary = "label frames or face crops with an SE-ResNet (top-k scores)"
    Params = ClassifyParams
    params: ClassifyParams

    def open(self) -> None:
        p = self.params
        self.model = checkpoint.load(p.model, p.weights, p.classes)
        self.dtype = inference_dtype(self.device, p.half)
        self.model.net.to(self.device, self.dtype)
        self.model.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.model.net = compiled(self.model.net, self.context.name, p.compile)
        self.k = min(p.topk, len(self.model.classes))

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        if self.params.on == "frame":
            probs = self._classify([f.image[None] for f in frames])
            return [f.with_meta(**self._frame_labels(p)) for f, p in
                    zip(frames, probs.split(1), strict=True)]
        pictures = []
        for frame in frames:
            dets = frame.detections
            if dets is not None and len(dets) and "crops" not in dets.extra:
                raise VidgraphError("'on: detections' needs face chips: put a face_crops "
                                    "node before this one")
            if dets is not None and len(dets):
                pictures.append(dets.extra["crops"])
        probs = self._classify(pictures) if pictures else torch.zeros((0, 1))
        out, used = [], 0
        for frame in frames:
            dets = frame.detections
            if dets is None or not len(dets):
                out.append(frame)
                continue
            mine = probs[used:used + len(dets)]
            used += len(dets)
            out.append(frame.with_meta(detections=self._labelled(dets, mine)))
        return out

    def _classify(self, pictures: list[torch.Tensor]) -> torch.Tensor:
        """Class probabilities (N, classes) on the CPU for groups of uint8 pictures."""
        inputs = torch.cat([self.model.prepare(p.to(self.device), self.dtype)
                            for p in pictures])
        return self.model.probabilities(inputs, self.params.chunk, self.params.views).cpu()

    def _top(self, probs: torch.Tensor) -> list[dict[str, float]]:
        values, indices = probs.topk(self.k, dim=1)
        names = self.model.classes
        return [{names[i]: round(v, 5) for v, i in zip(vs, ix, strict=True)}
                for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)]

    def _frame_labels(self, probs: torch.Tensor) -> dict[str, object]:
        top = self._top(probs)[0]
        label, score = next(iter(top.items()))
        return {"label": label, "label_score": score, "scores": top}

    def _labelled(self, dets: Detections, probs: torch.Tensor) -> Detections:
        top = self._top(probs)
        best = probs.max(1)
        labelled = dataclasses.replace(
            dets, labels=tuple(self.model.classes[i] for i in best.indices.tolist()),
            label_scores=best.values.to(dets.boxes.device))
        return labelled.with_extra(topk=tuple(top))
