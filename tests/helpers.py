"""Nodes used by tests through ``python: tests.helpers:Class`` (with --allow-python)."""

from __future__ import annotations

import random
import threading
import time
from typing import ClassVar

from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Port, PortKind, Sink, Stage


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

    def process(self, frame: Frame) -> Frame:
        return self.process_batch([frame])[0]


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
