"""Source, Stage and Sink: what a plugin author writes, and the contract the runtime keeps.

Declaring a plugin
    A node class carries everything about itself as class data: ``name`` (registered name),
    ``summary`` (one line), ``inputs``/``outputs`` (:class:`Port`), and ``Params`` (a pydantic
    model: types, defaults, ranges, one-line descriptions). The registry, the validator,
    ``vidgraph describe`` and the JSON Schema all read this one declaration. Register the
    class under the entry point group ``vidgraph.plugins``.

Lifecycle (the runtime guarantees all of this; a plugin never needs to read ``executor.py``)
    1. ``__init__(params, context)`` runs while the graph is built: keep the validated
       params, do no I/O.
    2. ``open()`` runs once, before any frame, on the main thread, after every node has
       been constructed: load models, open files and devices here. If it raises, the graph
       does not start, and every node already opened is closed.
    3. Work happens on the node's own worker thread, under ``torch.inference_mode()``:
       - a ``Source``'s ``generate()`` is iterated; it yields :class:`Frame` objects for its
         first output port and :class:`Emit` for any other. Returning ends the stream;
         ``Emit(port, END)`` ends one port early (a file without sound ends ``audio``).
         A source of several streams yields ``StreamEnded(stream)`` when one of them ends
         and the others go on. ``stop_requested`` in the context turns true on Ctrl+C: a
         source that blocks should check it;
       - a ``Stage`` overrides ``process(frame)``, called for each frame, or
         ``process_batch(frames)``, called with up to ``batch_size`` frames (across streams
         too); the runtime calls whichever the class overrides. It returns a Frame (sent to
         its first output), an :class:`Emit`, a list of those, or None to drop the frame.
         Items that arrive on other input ports go to ``receive(port, item)``;
       - a ``Sink`` gets ``write(frame)`` for its first input and ``receive(port, item)``
         for the others.
       Methods of one node instance are never called from two threads at once. With
       ``replicas: N`` the runtime makes N instances and restores the order of outputs
       (for a node with per-stream state: the order within each stream).
       ``input_ended(port)`` says that one input port has delivered its last item.
    4. Streams: ``stream_started(stream)`` comes before a stream's first frame and
       ``stream_ended(stream)`` after its last (see :mod:`pipeline.core.streams`). A node
       that keeps state per stream names the dicts (keyed by stream) in ``stream_state``:
       the default ``stream_ended`` frees that stream's entries, and with ``replicas`` every
       frame of a stream goes to the same instance. ``stream_ended`` may return items, as
       ``flush`` does. The markers of other inputs that carry a stream's items (audio)
       arrive in ``receive(port, marker)``, in order with that input's items; a node that
       does not follow them there ignores them.
    5. ``flush()`` is called once at end of stream (every input finished), before the
       end-of-stream goes downstream; a stage may return frames it held back.
    6. ``close()`` follows every successful ``open()``, exactly once, also after an error,
       Ctrl+C or an abort: sinks finalize here (an MP4 gets its trailer).

Frames: ``pts``/``time_base`` come from the source and must be passed on unchanged.
Frames arrive on the node's ``device`` unless the class sets ``any_device = True``, and
their pixels can be read at once (a GPU stage's work is waited for).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from .edge import EOS as END
from .frame import Frame
from .streams import StreamEnded, StreamStarted

log = logging.getLogger("vidgraph")
__all__ = ["END", "Emit", "Node", "NodeContext", "Params", "Port", "PortKind", "Sink", "Source",
           "Stage", "StreamEnded"]


class PortKind(StrEnum):
    """What a port carries; an edge may only join ports of the same kind."""

    VIDEO = "video"  #: Frame objects
    AUDIO = "audio"  #: AudioPacket objects, compressed, passed through
    PACKETS = "packets"  #: VideoPacket objects: compressed pictures, copied, not decoded
    EVENTS = "events"  #: dicts describing things that happened (reconnects, ...)


@dataclass(frozen=True)
class Port:
    """A named input or output of a node.

    ``optional`` inputs may stay unconnected; ``optional`` outputs may go unused.
    """

    name: str
    kind: PortKind = PortKind.VIDEO
    optional: bool = False
    doc: str = ""


@dataclass(frozen=True)
class Emit:
    """An item sent to a named output port (a bare Frame goes to the first output)."""

    port: str
    item: Any


class Params(BaseModel):
    """Base for a node's parameter model: unknown keys are errors, values are checked."""

    # coerce_numbers_to_str: `preset: 12` in YAML means the string "12".
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


BaseParams = Params  # the name ``Params`` is taken by each node's own model inside Node


@dataclass(frozen=True)
class NodeContext:
    """What the runtime tells a node about where it runs."""

    name: str
    device: torch.device
    stop_requested: Any = None  # a threading.Event; set on Ctrl+C
    connected: frozenset[str] = frozenset()  #: names of the input ports that are connected
    metrics: Any = None  #: the graph's :class:`~pipeline.core.metrics.Metrics` (read-only)
    #: the node's ``on_error``: a source that meets a bad input (a corrupt picture in a
    #: folder) goes on past it when this is ``skip``, and says so with :meth:`skipped`
    on_error: str = "fail"
    #: names of the output ports some node reads (a source need not decode what no one
    #: reads); None when not known (every output then counts as read)
    consumed: frozenset[str] | None = None
    graph: str = "graph"  #: the graph's name (MQTT topics name it)

    def reads(self, port: str) -> bool:
        """Whether some node reads output ``port``."""
        return self.consumed is None or port in self.consumed

    def stopping(self) -> bool:
        """Whether the graph is shutting down (sources should return soon)."""
        return self.stop_requested is not None and self.stop_requested.is_set()

    def skipped(self, reason: str) -> None:
        """Log and count an input this node skipped (``on_error: skip``)."""
        log.warning("node '%s': %s (skipped)", self.name, reason)
        if self.metrics is not None:
            self.metrics.nodes[self.name].skip()

    def watch(self, stream: str, timeout_s: float | None, segment: int = 1) -> None:
        """A source starts reading ``stream``: the health checks fail while a live stream
        sends no frame for ``timeout_s`` seconds (None: the stream may pause). Its outputs
        are numbered from ``segment`` (see :meth:`segment`)."""
        if self.metrics is not None:
            self.metrics.streams.watch(self.name, stream, timeout_s, segment)

    def segment(self, stream: str) -> int:
        """The segment of ``stream`` that a sink writes now: 1, or more for a camera that
        moved to this machine from another (its files then take a new name instead of
        overwriting the ones written before the move)."""
        return 1 if self.metrics is None else int(self.metrics.streams.segment(stream))

    def count(self, what: str, n: int = 1) -> None:
        """Add ``n`` to this node's counter ``what`` (``--stats`` shows it), from any
        thread: damaged packets, frames lost, drops inside a node."""
        if self.metrics is not None and n:
            self.metrics.nodes[self.name].count(what, n)


class Node:
    """Base of all nodes; subclass :class:`Source`, :class:`Stage` or :class:`Sink`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    inputs: ClassVar[tuple[Port, ...]] = ()
    outputs: ClassVar[tuple[Port, ...]] = ()
    Params: ClassVar[type[Params]] = Params
    #: True for nodes that never read pixels (or move them themselves): the runtime then
    #: hands them frames where they are, without converting or copying them.
    any_device: ClassVar[bool] = False
    #: names of the attributes (dicts keyed by stream name) that hold per-stream state:
    #: with replicas, every frame of a stream then goes to the same instance, and the
    #: default ``stream_ended`` frees that stream's entries
    stream_state: ClassVar[tuple[str, ...]] = ()
    #: False for nodes whose state spans streams: they cannot be split into replicas
    replicable: ClassVar[bool] = True
    #: names of the parameters that say where the node writes (a file, a URL): validation
    #: refuses two nodes writing to one place
    writes_to: ClassVar[tuple[str, ...]] = ()
    #: True for nodes that listen on a port of their machine (a web page): the workers of
    #: a cluster, several to a machine, cannot each run one
    listens: ClassVar[bool] = False

    @classmethod
    def records(cls, params: BaseParams) -> bool:
        """Whether this node keeps everything it gets (a recording): then the edges on its
        way from a live source never drop, they queue (``backlog``) instead."""
        return False

    @classmethod
    def check_inputs(cls, connected: set[str]) -> str | None:
        """What is wrong with this set of connected inputs, if anything (for inputs that
        are optional one by one but not all together)."""
        return None

    def __init__(self, params: BaseParams, context: NodeContext) -> None:
        self.params = params
        self.context = context

    @property
    def device(self) -> torch.device:
        """The device this node's frames arrive on."""
        return self.context.device

    @classmethod
    def output_ports(cls, params: BaseParams) -> tuple[Port, ...]:
        """The output ports of a node with these parameters: ``outputs``, unless a node
        names its ports from its parameters (``route``)."""
        return cls.outputs

    def open(self) -> None:
        """Acquire resources (models, files). Called once before any frame."""

    def receive(self, port: str, item: Any) -> Any:
        """Handle an item that arrived on a non-default input port (an audio packet, an
        event, or a :class:`~pipeline.core.streams.StreamStarted`/``StreamEnded`` marker
        of an audio input)."""
        if isinstance(item, StreamStarted | StreamEnded):
            return None
        raise NotImplementedError(f"{type(self).__name__} does not take input on '{port}'")

    def input_ended(self, port: str) -> None:
        """The input ``port`` delivered its last item (others may still be running)."""

    def stream_started(self, stream: str) -> None:
        """The first frame of ``stream`` follows (also when it comes back after an end)."""

    def stream_ended(self, stream: str) -> Sequence[Frame | Emit]:
        """``stream`` ended: free what is kept for it; return items held back for it."""
        for attr in self.stream_state:
            getattr(self, attr, {}).pop(stream, None)
        return ()

    def streams_held(self) -> int:
        """How many per-stream entries this node holds now (for leak checks and stats)."""
        return sum(len(getattr(self, attr, ())) for attr in self.stream_state)

    def flush(self) -> Sequence[Frame | Emit]:
        """Items held back, emitted at end of stream before it goes downstream."""
        return ()

    def close(self) -> None:
        """Release resources; always called once after a successful ``open()``."""

    @classmethod
    def kind(cls) -> str:
        """'source', 'stage' or 'sink'."""
        for base, label in ((Source, "source"), (Stage, "stage"), (Sink, "sink")):
            if issubclass(cls, base):
                return label
        return "node"


class Source(Node):
    """A node with no input: it produces frames (and maybe audio, events)."""

    outputs: ClassVar[tuple[Port, ...]] = (Port("out"),)

    def generate(self) -> Iterator[Frame | Emit | StreamEnded]:
        """Yield frames until the stream ends; return to end it."""
        raise NotImplementedError

    def expected_frames(self) -> int | None:
        """How many frames this source will produce, when known (for progress and ETA)."""
        return None

    @property
    def live(self) -> bool:
        """True for cameras and streams: the edges after a live source drop the oldest
        frames instead of blocking it (unless the graph says otherwise)."""
        return False

    @classmethod
    def shardable(cls, params: BaseParams, name: str) -> list[dict[str, Any]] | None:
        """The streams of a multi-stream source, as ``{stream, url}`` records, when the
        source can be split: each worker of a cluster then runs it on its share, given as a
        followed sources file (see :meth:`on_share`). None: this source cannot be split."""
        return None

    @classmethod
    def on_share(cls, params: BaseParams, sources_file: str) -> BaseParams:
        """These parameters, reading their streams from ``sources_file`` instead."""
        raise NotImplementedError(f"{cls.__name__} cannot be split across workers")


#: what a stage returns for one frame
Result = Frame | Emit | list[Frame | Emit] | None


class Stage(Node):
    """A node with inputs and outputs: it transforms, annotates, drops or routes frames.

    Override ``process`` (one frame at a time) or ``process_batch`` (a batch at a time);
    the runtime calls the one the class overrides.
    """

    inputs: ClassVar[tuple[Port, ...]] = (Port("in"),)
    outputs: ClassVar[tuple[Port, ...]] = (Port("out"),)
    _batched: ClassVar[bool] = False
    #: the ``batch_size`` a graph that does not set one gets (a model whose batches pay
    #: for themselves says so here)
    batch_size: ClassVar[int] = 1

    def process(self, frame: Frame) -> Result:
        """Handle one frame; return what goes downstream (None drops it)."""
        raise NotImplementedError(f"{type(self).__name__} overrides neither process nor "
                                  "process_batch")

    def process_batch(self, frames: list[Frame]) -> Sequence[Result]:
        """Handle a batch; one result per frame, as ``process`` returns."""
        raise NotImplementedError(f"{type(self).__name__} overrides neither process nor "
                                  "process_batch")

    @classmethod
    def batched(cls) -> bool:
        """Whether the class handles batches (overrides ``process_batch``)."""
        return cls._batched

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._batched = cls.process_batch is not Stage.process_batch  # once, not per frame

    def run(self, frames: list[Frame]) -> list[Result]:
        """One result per frame, from whichever of the two methods the class overrides."""
        if self._batched:
            results = list(self.process_batch(frames))
            if len(results) != len(frames):
                raise RuntimeError(f"{type(self).__name__}.process_batch returned "
                                   f"{len(results)} results for {len(frames)} frames")
            return results
        return [self.process(frame) for frame in frames]


class Sink(Node):
    """A node with no output: it writes frames somewhere."""

    inputs: ClassVar[tuple[Port, ...]] = (Port("in"),)
    any_device = True

    def write(self, frame: Frame) -> None:
        """Consume one frame from the first input port."""
        raise NotImplementedError
