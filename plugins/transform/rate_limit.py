"""``rate_limit``: cap the frame rate by dropping frames, or pace frames to real time."""

from __future__ import annotations

import math
import time

from pydantic import Field, model_validator

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage


class RateLimitParams(Params):
    """Parameters of ``rate_limit``."""

    fps: float | None = Field(None, gt=0, description="at most this many frames per second")
    realtime: bool = Field(False, description="hold each frame until its pts is due")

    @model_validator(mode="after")
    def _something(self) -> RateLimitParams:
        if self.fps is None and not self.realtime:
            raise ValueError("give fps, realtime: true, or both")
        return self


class RateLimit(Stage):
    """Keeps at most ``fps`` frames per second of each stream, chosen on the pts timeline
    (30 to 20 fps keeps two of every three, evenly); dropped frames leave gaps in pts.
    ``realtime: true`` releases frames no faster than their timestamps (a file behaves
    like a camera).

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 64, height: 64, fps: 30, duration: 1}
      slow: {plugin: rate_limit, input: src, fps: 10}
      out: {plugin: null_sink, input: slow}
    ```
    """

    name = "rate_limit"
    summary = "cap the frame rate (drop by pts) or pace to real time"
    Params = RateLimitParams
    params: RateLimitParams
    any_device = True
    stream_state = ("last_slot", "clock")

    def open(self) -> None:
        self.last_slot: dict[str, int] = {}
        self.clock: dict[str, tuple[float, float]] = {}  # stream -> (first time, wall start)

    def process(self, frame: Frame) -> Frame | None:
        t = frame.time if frame.time is not None else frame.captured
        fps = self.params.fps
        if fps is not None:
            slot = math.floor(t * fps + 1e-6)
            if slot <= self.last_slot.get(frame.stream, -math.inf):
                return None
            self.last_slot[frame.stream] = slot
        if self.params.realtime:
            t0, wall0 = self.clock.setdefault(frame.stream, (t, time.monotonic()))
            wait = wall0 + (t - t0) - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        return frame
