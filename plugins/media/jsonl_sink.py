"""``jsonl_sink``: one JSON object per frame (what was detected or recognised), line by line."""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from pydantic import Field

from pipeline.core.errors import MediaError, ParameterError
from pipeline.core.frame import Frame
from pipeline.core.node import NodeContext, Params, Port, PortKind, Sink
from pipeline.kit.files import prepare_output

#: the inputs of a sink that describes frames and events (``jsonl_sink``, ``mqtt_sink``)
RECORD_INPUTS = (
    Port("in", PortKind.VIDEO, optional=True, doc="frames to describe"),
    Port("events", PortKind.EVENTS, optional=True, doc="event records (SRC.events)"),
)


def require_records(context: NodeContext) -> None:
    """Fail opening a sink of :data:`RECORD_INPUTS` that has neither input connected."""
    if not context.connected:
        raise ParameterError("connect 'input' (frames), 'events' (SRC.events), or both")


class JsonlSinkParams(Params):
    """Parameters of ``jsonl_sink``."""

    path: str = Field(description="output .jsonl file (- for standard output)")


class JsonlSink(Sink):
    """Writes ``{stream, index, pts, time, source, detections, label, label_score, scores}``
    per frame.

    Each line is flushed as it is written, so another program can follow the file live
    (``tail -f``). ``detections`` is a list of ``{box, score, landmarks, label, label_score}``.
    Records from an ``events`` port (a source's reconnects, say) are written as they come;
    connect ``input``, ``events`` or both.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 64, height: 64, duration: 0.2}
      out: {plugin: jsonl_sink, input: src, path: out/doc_frames.jsonl}
    ```
    """

    name = "jsonl_sink"
    summary = "one JSON line per frame (detections, labels, timestamps) or per event"
    inputs = RECORD_INPUTS
    Params = JsonlSinkParams
    params: JsonlSinkParams
    writes_to = ("path",)

    def open(self) -> None:
        require_records(self.context)
        if self.params.path == "-":
            self.file = sys.stdout
            self.owned = False
        else:
            path = prepare_output(self.params.path)
            try:
                self.file = path.open("w", encoding="utf-8", buffering=1)
            except OSError as exc:
                raise MediaError(f"cannot write '{path}': {exc.strerror}") from None
            self.owned = True

    def write(self, frame: Frame) -> None:
        self.file.write(json.dumps(frame_record(frame)) + "\n")
        self.file.flush()

    def receive(self, port: str, item: Any) -> None:
        self.file.write(json.dumps(item) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.owned:
            self.file.close()


def frame_record(frame: Frame) -> dict[str, Any]:
    """The JSON-ready record of one frame."""
    dets = frame.detections
    record: dict[str, Any] = {
        "stream": frame.stream,
        "index": frame.index,
        "pts": frame.pts,
        "time": None if frame.time is None else round(frame.time, 6),
        "source": frame.meta.get("source"),
        "detections": dets.to_json() if dets is not None else [],
    }
    for key in ("label", "label_score"):
        if key in frame.meta:
            record[key] = frame.meta[key]
    if "scores" in frame.meta:
        record["scores"] = _plain(frame.meta["scores"])
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
