"""The lifecycle of a stream (one camera, one file) as items that flow with its frames.

A source's streams start and end: a file ends, a camera is removed from a sources file, a
camera gives up. The runtime sends :class:`StreamStarted` down a source's video outputs
before the first frame of a stream and :class:`StreamEnded` after its last, in order with
the frames, through every stage to every sink. Nodes see them as calls,
``stream_started(stream)`` and ``stream_ended(stream)``: a node frees the state it keeps for
that stream, a sink with ``{stream}`` in its path finalises that stream's output. A
stream that comes back (a camera added again) starts anew.

A source that knows a stream ended while others go on yields ``StreamEnded(stream, why)``;
every stream still open when a source returns is ended for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamStarted:
    """The first frame of ``stream`` follows."""

    stream: str


@dataclass(frozen=True)
class StreamEnded:
    """``stream`` has ended; ``reason`` says why (end of file, removed, gave up)."""

    stream: str
    reason: str = "end of stream"


#: either marker
StreamMarker = StreamStarted | StreamEnded
