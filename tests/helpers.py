"""Nodes used by tests through ``python: tests.helpers:Class`` (with --allow-python)."""

from __future__ import annotations

import pickle
import random
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import ClassVar

import torch
from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Emit, Params, Port, PortKind, Sink, Source, Stage
from pipeline.core.streams import StreamEnded


class FailOnParams(Params):
    index: int = Field(description="frame index that raises")
    delay_ms: float = 0.0


class FailOn(Stage):
    """Raises ValueError on one frame index; passes every other frame."""

    name = "fail_on"
    summary = "raises on one frame"
    Params = FailOnParams
    params: FailOnParams
    any_device = True

    def process(self, frame: Frame) -> Frame:
        time.sleep(self.params.delay_ms / 1000)
        if frame.index == self.params.index:
            raise ValueError(f"boom at {frame.index}")
        return frame


class RecordParams(Params):
    key: str = Field(description="name of the list in Record.seen that receives items")
    delay_ms: float = 0.0
    jitter_ms: float = 0.0


class BatchRecorder(Stage):
    """Records the size of every batch it gets (in ``Record.seen[key]``)."""

    name = "batch_recorder"
    summary = "records batch sizes"
    Params = RecordParams
    params: RecordParams
    any_device = True

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        Record.add(self.params.key, len(frames))
        time.sleep(self.params.delay_ms / 1000)
        return frames


class Jitter(Stage):
    """Sleeps a random time per frame (replica order tests)."""

    name = "jitter"
    summary = "random delay"
    Params = RecordParams
    params: RecordParams
    any_device = True

    def process(self, frame: Frame) -> Frame:
        time.sleep(self.params.delay_ms / 1000 + random.random() * self.params.jitter_ms / 1000)
        return frame


class Record(Sink):
    """Keeps every frame it gets in ``Record.seen[key]``, for assertions."""

    name = "record"
    summary = "collects frames"
    Params = RecordParams
    params: RecordParams
    seen: ClassVar[dict[str, list]] = {}
    lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def add(cls, key: str, item: object) -> None:
        with cls.lock:
            cls.seen.setdefault(key, []).append(item)

    def write(self, frame: Frame) -> None:
        time.sleep(self.params.delay_ms / 1000)
        Record.add(self.params.key, frame)


class HoldLast(Stage):
    """Holds back each instance's most recent frame and returns it from flush()."""

    name = "hold_last"
    summary = "emits its last frame at end of stream"
    Params = RecordParams
    params: RecordParams
    any_device = True

    def open(self) -> None:
        self.held: Frame | None = None
        self.closed = False

    def process(self, frame: Frame) -> Frame | None:
        out, self.held = self.held, frame
        return out

    def flush(self) -> list[Frame]:
        assert not self.closed, "flush() after close()"
        return [self.held] if self.held is not None else []

    def close(self) -> None:
        self.closed = True


class Arrivals(Sink):
    """Keeps ``(stream, arrival time, frame)`` for every frame in ``Record.seen[key]``."""

    name = "arrivals"
    summary = "collects frames with their arrival time"
    Params = RecordParams
    params: RecordParams

    def write(self, frame: Frame) -> None:
        Record.add(self.params.key, (frame.stream, time.monotonic(), frame))


class EventLog(Sink):
    """Keeps every event record from its ``events`` input in ``Record.seen[key]``."""

    name = "event_log"
    summary = "collects events"
    inputs = (Port("in", optional=True), Port("events", PortKind.EVENTS))
    Params = RecordParams
    params: RecordParams

    def receive(self, port: str, item: object) -> None:
        Record.add(self.params.key, item)


class StreamsParams(Params):
    streams: int = Field(3, description="how many streams")
    frames: int = Field(10, description="frames per stream")
    end_early: bool = Field(False, description="end stream 0 halfway, by a StreamEnded")


class ManyStreams(Source):
    """Frames of several streams, interleaved (stream s0, s1, ...), 8x8 pixels whose value
    is the frame index; optionally ends stream s0 early by yielding ``StreamEnded``."""

    name = "many_streams"
    summary = "interleaved frames of several streams"
    Params = StreamsParams
    params: StreamsParams

    def generate(self) -> Iterator[Frame | StreamEnded]:
        p = self.params
        for i in range(p.frames):
            for s in range(p.streams):
                if p.end_early and s == 0 and i >= p.frames // 2:
                    if i == p.frames // 2:
                        yield StreamEnded("s0", "ended early")
                    continue
                yield Frame.from_image(torch.full((8, 8, 3), i % 256, dtype=torch.uint8),
                                       pts=i, time_base=Fraction(1, 30), stream=f"s{s}",
                                       index=i)


class PerStreamParams(RecordParams):
    fail_on: int | None = Field(None, description="frame index whose batch raises")


class PerStream(Stage):
    """Keeps per-stream history (declared), and records in ``Record.seen[key]`` what each
    instance saw: ``(instance id, event, stream, index)``, with event ``frame``,
    ``started`` or ``ended``. A batch holding frame ``fail_on`` raises."""

    name = "per_stream"
    summary = "per-stream state, recorded"
    Params = PerStreamParams
    params: PerStreamParams
    any_device = True
    stream_state = ("history",)

    def open(self) -> None:
        self.history: dict[str, list[int]] = {}

    def stream_started(self, stream: str) -> None:
        Record.add(self.params.key, (id(self), "started", stream, None))

    def stream_ended(self, stream: str) -> list[Frame]:
        Record.add(self.params.key, (id(self), "ended", stream, None))
        super().stream_ended(stream)
        return []

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        assert torch.is_inference_mode_enabled()  # the runtime's, not the node's
        for frame in frames:
            Record.add(self.params.key, (id(self), "frame", frame.stream, frame.index))
            self.history.setdefault(frame.stream, []).append(frame.index)
        time.sleep(self.params.delay_ms / 1000 + random.random() * self.params.jitter_ms / 1000)
        if any(f.index == self.params.fail_on for f in frames):
            raise ValueError(f"boom at {self.params.fail_on}")
        return frames


class SharedState(Stage):
    """A stage whose state spans streams: it cannot be split into replicas."""

    name = "shared_state"
    summary = "state across streams"
    replicable = False

    def process(self, frame: Frame) -> Frame:
        return frame


class PickleAudio(Stage):
    """Sends every audio packet through ``pickle`` (as if it crossed a process) and on."""

    name = "pickle_audio"
    summary = "audio packets through pickle"
    inputs = (Port("in", optional=True), Port("audio", PortKind.AUDIO))
    outputs = (Port("out", optional=True), Port("audio", PortKind.AUDIO))

    def process(self, frame: Frame) -> Frame:
        return frame

    def receive(self, port: str, item: object) -> Emit:
        return Emit("audio", pickle.loads(pickle.dumps(item)))


class NoiseParams(Params):
    stream: str = Field("noise", description="the stream's name (any text)")
    width: int = 64
    height: int = 48
    fps: float = 20.0


class Noise(Source):
    """Random pictures (they do not compress) of one stream, in real time, until stopped."""

    name = "noise"
    summary = "random pictures"
    Params = NoiseParams
    params: NoiseParams

    @property
    def live(self) -> bool:
        return True

    def generate(self) -> Iterator[Frame]:
        p = self.params
        generator = torch.Generator().manual_seed(0)
        index = 0
        while not self.context.stopping():
            image = torch.randint(0, 256, (p.height, p.width, 3), dtype=torch.uint8,
                                  generator=generator)
            yield Frame.from_image(image, pts=index, time_base=1 / Fraction(p.fps),
                                   stream=p.stream, index=index, captured=time.monotonic())
            index += 1
            time.sleep(1 / p.fps)


class EventAtParams(Params):
    index: int = Field(description="frame index at which the event is emitted")


class EventAt(Stage):
    """Sends ``{"event": "motion", "stream": ...}`` on ``events`` when frame ``index`` passes
    (a stand-in for a motion detector or a tracker's track start)."""

    name = "event_at"
    summary = "one event at a frame index"
    outputs = (Port("out"), Port("events", PortKind.EVENTS))
    Params = EventAtParams
    params: EventAtParams
    any_device = True

    def process(self, frame: Frame) -> list[Frame | Emit]:
        if frame.index != self.params.index:
            return [frame]
        return [frame, Emit("events", {"event": "motion", "stream": frame.stream,
                                       "index": frame.index})]
