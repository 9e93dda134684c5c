"""``identity``: pass frames through unchanged (measuring, debugging, simulating load)."""

from __future__ import annotations

import time

from pydantic import Field

from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage


class IdentityParams(Params):
    """Parameters of ``identity``."""

    delay_ms: float = Field(0.0, ge=0, description="sleep this long per frame (a slow stage)")


class Identity(Stage):
    """Passes every frame on untouched, like GStreamer's ``identity``. With ``delay_ms`` it
    behaves like a slow model, to try flow-control policies; with 0 it measures the cost of
    a hop between threads.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 64, height: 64, duration: 0.2}
      slow: {plugin: identity, input: src, delay_ms: 5}
      out: {plugin: null_sink, input: slow}
    ```
    """

    name = "identity"
    summary = "pass frames through unchanged (optional delay)"
    Params = IdentityParams
    params: IdentityParams
    any_device = True

    def process(self, frame: Frame) -> Frame:
        if self.params.delay_ms:
            time.sleep(self.params.delay_ms / 1000.0)
        return frame
