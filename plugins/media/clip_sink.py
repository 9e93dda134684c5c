"""``clip_sink``: short clips around what happened, copied from the camera's own packets,
starting ``pre_roll`` seconds before the trigger."""

from __future__ import annotations

import logging
import shutil
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.node import Emit, Params, Port, PortKind, Sink
from pipeline.core.packets import AudioCodec, AudioPacket, Packet, VideoPacket
from pipeline.core.streams import StreamEnded, StreamStarted
from pipeline.kit.files import prepare_output

from .encoded_output import EncodedOutput, EncoderSettings

log = logging.getLogger("vidgraph")


class ClipSinkParams(Params):
    """Parameters of ``clip_sink``."""

    path: str = Field("clips/{stream}/{start}.mp4",
                      description="where each clip goes: {stream}, {start} (the trigger's "
                                  "time, s), {n} (the clip's number for its stream)")
    pre_roll: float = Field(5.0, ge=0, le=600, description="seconds kept before a trigger")
    post_roll: float = Field(5.0, ge=0, le=600, description="seconds written after the last "
                                                             "trigger")
    max_clip: float = Field(300.0, gt=0, description="a clip this long (s) ends at its next "
                                                     "keyframe, where the next one begins")
    trigger_delay: float = Field(3.0, ge=0, le=600,
                                 description="how late a trigger may come (the detector's "
                                             "latency, s): that much more is kept")
    when: Literal["any", "detections"] = Field(
        "detections", description="frames on 'trigger' that start a clip: any frame, or one "
                                  "with detections")
    min_score: float = Field(0.0, ge=0, le=1, description="with when: detections, the "
                                                          "lowest score that counts")
    min_free_mb: float = Field(500.0, ge=0, description="no clip is started while the disk "
                                                        "has less free space than this")

    @model_validator(mode="after")
    def _path_names_the_stream(self) -> ClipSinkParams:
        if "{start}" not in self.path and "{n}" not in self.path:
            raise ValueError("path needs {start} or {n}: every clip needs a file of its own")
        return self


@dataclass
class _Clip:
    """A clip being written."""

    output: EncodedOutput
    path: str
    start: float  # stream time of its first picture
    trigger: float  # stream time of the first trigger
    last: float  # stream time of the latest trigger
    reason: str  # what triggered it
    end: float = 0.0  # stream time of the last picture written


@dataclass
class _Buffer:
    """One stream's packets of the last seconds (pictures and sound, as they came) and its
    clip, if one is open."""

    #: the packets, in groups that each begin at a keyframe (what came before the first
    #: keyframe is of no use: a clip starts at one)
    groups: deque[list[Packet]] = field(default_factory=deque)
    newest: float | None = None  # stream time of the newest picture
    audio: AudioCodec | None = None
    clip: _Clip | None = None
    count: int = 0  # clips written for this stream


class ClipSink(Sink):
    """Writes a clip of a camera when something happens: the camera's packets (from
    ``SRC.packets``, and its sound from ``SRC.audio``) are kept for ``pre_roll`` seconds;
    a trigger starts a clip at the keyframe at or before ``pre_roll`` seconds before it, the
    clip goes on while triggers keep coming and ends ``post_roll`` seconds after the last
    one (or at ``max_clip``). Nothing is decoded or encoded: a clip holds the camera's own
    packets.

    Triggers: frames on ``trigger`` (with ``when: detections``, only those with a
    detection: connect a detector's output), and any record on ``events`` (a track start,
    a classifier's routed label: the record's ``stream`` names the camera). Each finished
    clip is announced on the ``events`` output (``{"event": "clip", stream, path, start,
    end, trigger}``) for ``jsonl_sink`` or ``mqtt_sink``. No clip is started while the
    disk holds less than ``min_free_mb``.

    ```yaml
    nodes:
      src: {plugin: video_source, url: input.mp4}   # a camera: rtsp://...
      faces: {plugin: mtcnn, input: src, every: 3}
      clips: {plugin: clip_sink, trigger: faces, packets: src.packets, audio: src.audio,
              path: "out/clips/{stream}-{start}.mp4", when: any, pre_roll: 0.5, post_roll: 0.5}
      log: {plugin: jsonl_sink, events: clips.events, path: out/clips.jsonl}
    ```
    """

    name = "clip_sink"
    summary = "clips around triggers with pre-roll, copied from the camera's packets"
    inputs = (
        Port("trigger", PortKind.VIDEO, optional=True,
             doc="frames that trigger a clip of their stream"),
        Port("packets", PortKind.PACKETS, doc="the camera's compressed pictures (SRC.packets)"),
        Port("audio", PortKind.AUDIO, optional=True, doc="its sound (SRC.audio)"),
        Port("events", PortKind.EVENTS, optional=True, doc="records that trigger a clip"),
    )
    outputs = (Port("events", PortKind.EVENTS, optional=True,
                    doc="one record per finished clip"),)
    Params = ClipSinkParams
    params: ClipSinkParams
    stream_state = ("buffers",)

    @classmethod
    def records(cls, params: Params) -> bool:
        return True  # a clip must hold every picture of its seconds

    @classmethod
    def check_inputs(cls, connected: set[str]) -> str | None:
        if not connected & {"trigger", "events"}:
            return "connect 'trigger' (frames) or 'events' (records), or both: what starts a clip"
        return None

    def open(self) -> None:
        self.buffers: dict[str, _Buffer] = {}
        self.settings = EncoderSettings(codec="copy", pix_fmt="yuv420p", audio="copy")
        self.keep = self.params.pre_roll + self.params.trigger_delay

    # -- triggers ----------------------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        if self.params.when == "detections":
            dets = frame.detections
            if dets is None or not bool((dets.scores >= self.params.min_score).any()):
                return
        self._trigger(frame.stream, frame.time, "detections" if self.params.when ==
                      "detections" else "frame")

    def _trigger(self, stream: str, at: float | None, reason: str) -> None:
        buffer = self.buffers.get(stream)
        if buffer is None or buffer.newest is None:
            return  # no picture of this stream yet: nothing to clip
        at = buffer.newest if at is None else at
        clip = buffer.clip
        if clip is not None:
            clip.last = max(clip.last, at)
            return
        self._start(stream, buffer, at, reason)

    def _start(self, stream: str, buffer: _Buffer, at: float, reason: str) -> None:
        if not buffer.groups:
            return
        first = 0  # the group of the keyframe at or before pre_roll before the trigger
        for i, group in enumerate(buffer.groups):
            if _start_time(group) <= at - self.params.pre_roll:
                first = i
        items = [p for group in list(buffer.groups)[first:] for p in group]
        self._open(stream, buffer, items, at, reason)

    def _open(self, stream: str, buffer: _Buffer, items: list[Packet], at: float,
              reason: str) -> None:
        """Start a clip with ``items`` (from a keyframe on), triggered at ``at``."""
        buffer.count += 1
        start = items[0].time or 0.0
        path = self.params.path.format(stream=stream, start=f"{at:.3f}", n=buffer.count)
        target = prepare_output(path)
        free_mb = shutil.disk_usage(target.parent).free / 2**20
        if free_mb < self.params.min_free_mb:
            self.context.count("clips_skipped_disk_full", 1)
            log.warning("node '%s': no clip of '%s' at %.1f s: %.0f MB free, under "
                        "min_free_mb %g", self.context.name, stream, at, free_mb,
                        self.params.min_free_mb)
            return
        output = EncodedOutput(self.context.name, str(target), self.settings,
                               buffer.audio is not None, self.context.count, buffer.audio)
        buffer.clip = _Clip(output, str(target), start, at, at, reason)
        for packet in items:
            self._put(buffer.clip, packet)

    # -- packets -----------------------------------------------------------------------------

    def receive(self, port: str, item: Any) -> list[Emit] | None:
        if port == "events":
            if isinstance(item, dict) and isinstance(item.get("stream"), str):
                self._trigger(item["stream"], None, str(item.get("event", "event")))
            return None
        if isinstance(item, StreamStarted):
            return None
        if isinstance(item, StreamEnded):
            if port != "packets":
                return None
            buffer = self.buffers.pop(item.stream, None)
            return self._finish(item.stream, buffer) if buffer is not None else None
        if not isinstance(item, Packet):
            return None
        buffer = self.buffers.setdefault(item.stream, _Buffer())
        if isinstance(item, AudioPacket):
            buffer.audio = item.codec
        elif item.time is not None:
            buffer.newest = item.time if buffer.newest is None else max(buffer.newest,
                                                                        item.time)
        if isinstance(item, VideoPacket) and item.keyframe and item.time is not None:
            buffer.groups.append([item])
        elif buffer.groups:
            buffer.groups[-1].append(item)
        self._trim(buffer)
        clip = buffer.clip
        if clip is None:
            return None
        if isinstance(item, VideoPacket) and item.time is not None:
            if item.time > clip.last + self.params.post_roll:
                return self._finish(item.stream, buffer)
            if item.keyframe and item.time - clip.start >= self.params.max_clip:
                # long enough: the next clip goes on from this keyframe, nothing lost
                done = self._finish(item.stream, buffer)
                self._open(item.stream, buffer, [item], clip.last, clip.reason)
                if buffer.clip is not None:
                    buffer.clip.trigger = clip.trigger
                return done
        self._put(clip, item)
        return None

    def _trim(self, buffer: _Buffer) -> None:
        """Keep what a trigger ``trigger_delay`` late could still want: from the keyframe at
        or before ``pre_roll + trigger_delay`` seconds ago on."""
        if buffer.newest is None:
            return
        horizon = buffer.newest - self.keep
        while len(buffer.groups) > 1 and _start_time(buffer.groups[1]) <= horizon:
            buffer.groups.popleft()

    @staticmethod
    def _put(clip: _Clip, packet: Packet) -> None:
        if isinstance(packet, VideoPacket):
            clip.output.write_packet(packet)
            if packet.time is not None:
                clip.end = max(clip.end, packet.time + float(packet.duration *
                                                             packet.time_base))
        elif isinstance(packet, AudioPacket):
            clip.output.add_audio(packet)

    def _finish(self, stream: str, buffer: _Buffer) -> list[Emit] | None:
        """Close the stream's clip, if one is open; its record for the ``events`` output."""
        clip, buffer.clip = buffer.clip, None
        if clip is None:
            return None
        try:
            clip.output.close()
        except MediaError as exc:
            log.error("node '%s': clip '%s' of '%s': %s", self.context.name, clip.path,
                      stream, exc)
            return None
        self.context.count("clips", 1)
        log.info("node '%s': clip of '%s', %.1f s to %.1f s: %s", self.context.name, stream,
                 clip.start, clip.end, clip.path)
        return [Emit("events", {"event": "clip", "node": self.context.name, "stream": stream,
                                "path": clip.path, "start": round(clip.start, 3),
                                "end": round(clip.end, 3), "trigger": clip.reason,
                                "triggered_at": round(clip.trigger, 3)})]

    def stream_ended(self, stream: str) -> list[Emit]:
        return []  # the triggers' stream ended; its packets' end closes the clip and frees it

    def flush(self) -> list[Emit]:
        done: list[Emit] = []
        for stream, buffer in self.buffers.items():
            done += self._finish(stream, buffer) or []
        return done

    def close(self) -> None:
        for buffer in self.buffers.values():
            if buffer.clip is not None:  # the graph failed: what was written stays playable
                buffer.clip.output.close()
                buffer.clip = None


def _start_time(group: list[Packet]) -> float:
    """Stream time of the keyframe a group of packets begins with."""
    return group[0].time or 0.0
