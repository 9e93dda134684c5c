"""``null_sink``: discards frames (benchmarks, graphs that only write side outputs)."""

from __future__ import annotations

from pipeline.core.frame import Frame
from pipeline.core.node import Sink


class NullSink(Sink):
    """Counts and discards frames; never converts or copies them.

    ```yaml
    nodes:
      src: {plugin: testsrc, duration: 0.1}
      out: {plugin: null_sink, input: src}
    ```
    """

    name = "null_sink"
    summary = "discard frames (for benchmarks and tests)"

    def write(self, frame: Frame) -> None:
        """Nothing to do: the runtime already counted the frame."""
