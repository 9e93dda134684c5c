"""``track``: stable ids for any detector's boxes, and predicted boxes between detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pydantic import Field, model_validator

from pipeline.core.frame import Detections, Frame
from pipeline.core.node import Emit, Params, Port, PortKind, Stage

from .tracker import Box, Tracker, TrackerSettings


class TrackParams(Params):
    """Parameters of ``track``."""

    high: float = Field(0.9, ge=0, le=1, description="detections at least this sure are "
                                                     "matched first and may start tracks")
    low: float = Field(0.7, ge=0, le=1, description="detections between low and high only "
                                                    "keep confirmed tracks alive")
    min_iou: float = Field(0.2, ge=0, lt=1, description="least overlap of a detection with a "
                                                        "track's predicted box")
    max_size_change: float = Field(1.5, gt=1, description="largest ratio of a detection's "
                                                          "height to its track's")
    max_speed: float = Field(6.0, gt=0, description="fastest plausible motion, in box heights "
                                                    "per second")
    min_hits: int = Field(2, ge=1, description="detections before a track is confirmed")
    confirm: float = Field(0.1, ge=0, description="seconds a track must span to be confirmed")
    max_age: float = Field(1.0, gt=0, description="seconds a confirmed track lives unseen")

    @model_validator(mode="after")
    def _low_below_high(self) -> TrackParams:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class Track(Stage):
    """Follows what a detector finds across frames (a Kalman filter on each box, the
    Hungarian method to match, ByteTrack's two stages by score) and gives each object an id,
    stable and unique within its stream. Every duration is in seconds of the stream's own
    time, so a 5 fps and a 60 fps camera behave alike.

    Each detection gets per-box fields: ``track_id`` (None until its track is confirmed:
    never a shared placeholder), ``predicted``, ``age`` and ``lost`` (s), ``hits`` and
    ``sigma`` (how uncertain its centre is, px). A confirmed track not seen in a frame (a
    turned head) gets its predicted box, marked ``predicted``, until it ends ``max_age``
    seconds after its last detection; on a frame where detection did not run (``mtcnn
    every: N``) every track, tentative ones too, gets its predicted box. The ``events``
    output says ``track_start`` and ``track_end`` (first and last time, best score and the
    index of its frame), one record per object.

    ```yaml
    nodes:
      src: {plugin: testsrc, pattern: person, width: 320, height: 180, duration: 0.5}
      faces: {plugin: mtcnn, input: src, every: 3}
      ids: {plugin: track, input: faces}
      out: {plugin: jsonl_sink, input: ids, path: out/doc_tracks.jsonl}
      log: {plugin: jsonl_sink, events: ids.events, path: out/doc_track_events.jsonl}
    ```
    """

    name = "track"
    summary = "stable ids per object (Kalman + Hungarian, two stages by score)"
    outputs = (Port("out"), Port("events", PortKind.EVENTS, optional=True,
                                 doc="track_start/track_end"))
    Params = TrackParams
    params: TrackParams
    any_device = True  # boxes only: the pixels stay where they are
    stream_state = ("trackers",)

    def open(self) -> None:
        p = self.params
        self.settings = TrackerSettings(
            high=p.high, low=p.low, min_iou=p.min_iou, max_size_change=p.max_size_change,
            max_speed=p.max_speed, min_hits=p.min_hits, confirm=p.confirm, max_age=p.max_age)
        self.trackers: dict[str, Tracker] = {}

    def process(self, frame: Frame) -> list[Frame | Emit]:
        tracker = self.trackers.setdefault(frame.stream, Tracker(self.settings))
        t = frame.time if frame.time is not None else frame.index / 30.0
        dets = frame.detections
        ran = bool(frame.meta.get("detected", True)) and dets is not None
        extra = {}
        if ran:
            assert dets is not None
            boxes = dets.boxes.detach().cpu().double().numpy()
            scores = dets.scores.detach().cpu().double().numpy()
            extra = {"landmarks": None if dets.landmarks is None
                     else dets.landmarks.detach().cpu().double().numpy(),
                     "labels": dets.labels,
                     "label_scores": None if dets.label_scores is None
                     else dets.label_scores.detach().cpu().double().numpy()}
            out, events = tracker.step(t, frame.index, boxes, scores, extra)
        else:
            out, events = tracker.step(t, frame.index, None, None)
        tracked = frame.with_meta(detections=_detections(out, dets if ran else None),
                                  detected=ran, tracked=True)
        return [tracked, *(self._event(frame.stream, e) for e in events)]

    def _event(self, stream: str, record: dict[str, Any]) -> Emit:
        return Emit("events", {**record, "node": self.context.name, "stream": stream})

    def stream_ended(self, stream: str) -> Sequence[Frame | Emit]:
        tracker = self.trackers.pop(stream, None)
        return [self._event(stream, e) for e in tracker.end()] if tracker is not None else []


def _detections(out: list[Box], dets: Detections | None) -> Detections:
    """The tracker's boxes as ``Detections``: the frame's own detections first (their
    landmarks, labels and extra fields kept), then the predicted boxes."""
    k = len(out)
    boxes = torch.from_numpy(np.array([b.box for b in out], np.float32).reshape(k, 4))
    numbers = np.array([(b.score, b.age, b.lost, b.sigma) for b in out],
                       np.float32).reshape(k, 4)
    predicted = [j for j, b in enumerate(out) if b.predicted]
    landmarks = None
    found = len(out) - len(predicted)  # the detections come first, in their order
    if dets is not None and dets.landmarks is not None:
        landmarks = torch.zeros(k, 5, 2)
        landmarks[:found] = dets.landmarks.float().cpu()
    elif any(b.track is not None and b.track.landmarks is not None
             for b in out[found:]):
        landmarks = torch.zeros(k, 5, 2)
    if landmarks is not None:
        for j in predicted:
            track = out[j].track
            if track is not None and track.landmarks is not None:
                # the latest landmarks, moved with the box
                shift = (out[j].box[:2] + out[j].box[2:] - track.last_box[:2]
                         - track.last_box[2:]) / 2
                landmarks[j] = torch.from_numpy(track.landmarks + shift).float()
    labels = None
    if dets is not None and dets.labels is not None:
        labels = tuple(dets.labels[b.det] if b.det is not None else
                       (b.track.label if b.track is not None else None) or "" for b in out)
    label_scores = None
    if dets is not None and dets.label_scores is not None:
        label_scores = torch.tensor([
            float(dets.label_scores[b.det]) if b.det is not None else
            (b.track.label_score if b.track is not None and b.track.label_score is not None
             else 0.0) for b in out])
    flags = np.zeros(k, bool)
    flags[predicted] = True
    table = torch.from_numpy(numbers)
    fields: dict[str, Any] = {
        "track_id": tuple(b.track_id for b in out),
        "predicted": torch.from_numpy(flags),
        "age": table[:, 1].round(decimals=3),
        "lost": table[:, 2].round(decimals=3),
        "hits": torch.tensor([b.hits for b in out], dtype=torch.int32),
        "sigma": table[:, 3].clone(),
    }
    if dets is not None and not predicted:
        fields = {**dets.extra, **fields}  # the detector's own per-box fields stay
    return Detections(boxes, table[:, 0].clone(), landmarks, labels, label_scores, fields)
