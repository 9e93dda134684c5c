"""One input stream of ``video_source``, read on its own thread.

A reader opens its URL, demuxes and decodes, and hands frames, audio packets and events to
the node through a shared queue. Files are read once (or looped). Live streams reconnect on
end of stream, on an error and on a stalled read, with exponential backoff, forever unless
``max_retries`` says otherwise. A stalled read is caught twice over: FFmpeg's own timeout,
and a watchdog (:meth:`StreamReader.check`, run by the node) that abandons a thread stuck
inside FFmpeg and starts a fresh connection, so a frozen camera never freezes the graph.

Live timestamps: cameras start with ``pts=None`` and restart their clock on every
reconnect. Frames of a live stream get a monotonic timeline of their own (time base
1/90000) that continues across reconnects, with the time the camera was away as a gap, and
``captured`` is the wall time the frame was shot as far as the stream's clock tells, so a
frame that waited in a socket buffer shows its real age in the latency figures.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.packets import Codec

from .hardware import decoder_accel, device_image, on_device, tell_once
from .live import Backoff, is_capture_device, is_network_url, redact, shown
from .picture import DecodedPicture, cosited
from .remux import codec_of, packet_of

log = logging.getLogger("vidgraph")
LIVE_TIME_BASE = Fraction(1, 90_000)
#: frames a reader may have queued for the node; beyond that it waits (or, live, the edge
#: after the node drops): a reader never buffers more than this
FRAME_SLOTS = 2
#: audio packets and events a reader may have queued: a file's reader waits for room, a
#: live one drops the newest and counts it (a stalled graph never grows the queue)
AUDIO_SLOTS = 64
EVENT_SLOTS = 64
#: extra seconds the watchdog allows beyond the timeout FFmpeg was given (it looks every
#: 0.2 s: a stall is reported within the timeout + 0.5 s)
WATCHDOG_GRACE_S = 0.25


@dataclass(frozen=True)
class ReadOptions:
    """How to open and read a stream (from ``video_source``'s parameters)."""

    live: bool
    transport: str = "tcp"
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    low_latency: bool = True
    loop: bool = False
    start: float = 0.0
    max_frames: int | None = None
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    max_retries: int | None = None
    strict: bool = False  # a damaged or truncated file fails the run instead of a warning
    decode: bool = True  # decode the pictures (something reads the frames)
    packets: bool = False  # hand over the pictures' packets as they are (a recorder copies)
    max_pixels: int = 8192 * 8192  # larger pictures are refused before decoding
    hwaccel: str | None = None  # cuda or cuda:N: decode with NVDEC where it can
    node: str = ""  # the node reading, for what the log says


def open_container(url: str, opts: ReadOptions) -> Any:
    """``av.open`` for reading with the options a URL of this kind needs.

    Raises MediaError (or FileNotFoundError) with a one-line reason; credentials in ``url``
    never appear in the message.
    """
    kwargs: dict[str, Any] = {}
    options = {}
    fmt = opts.format
    if is_network_url(url):
        kwargs["timeout"] = (opts.open_timeout, opts.read_timeout)
        if url.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = opts.transport
            if opts.low_latency and not opts.packets:
                # Default probing waits ~1 s for data the SDP already describes; a copy of
                # the packets needs it (the picture size is read from the stream itself).
                options.update(probesize="32", analyzeduration="0")
        if opts.low_latency:
            options["fflags"] = "nobuffer"
    elif is_capture_device(url):
        fmt = fmt or "v4l2"
        if not Path(url).exists():
            raise MediaError(f"no capture device '{url}'")
    elif not Path(url).exists():
        raise FileNotFoundError(2, "No such file or directory", url)
    options.update(opts.options)
    if opts.hwaccel:
        accel, why = decoder_accel(opts.hwaccel)
        if accel is not None:
            kwargs["hwaccel"] = accel
        else:
            tell_once(opts.node, url, f"cannot decode '{shown(url)}' with NVDEC ({why}): "
                      "decoding in software")
    started = time.monotonic()
    try:
        try:
            container = av.open(url, "r", format=fmt, options=options, **kwargs)
        except PermissionError as exc:  # the device would not open: decode in software
            if kwargs.pop("hwaccel", None) is None:
                raise
            tell_once(opts.node, url, f"cannot decode '{shown(url)}' with NVDEC ({exc}): "
                      "decoding in software")
            container = av.open(url, "r", format=fmt, options=options, **kwargs)
    except (av.FFmpegError, OSError) as exc:
        if "timeout" in kwargs and time.monotonic() - started >= opts.open_timeout * 0.95:
            # FFmpeg's interrupt makes a silent server's reply look like "invalid data"
            reason = f"no answer in {opts.open_timeout:g} s"
        else:
            reason = _reason(exc, opts.open_timeout, url)
        raise MediaError(f"cannot open '{shown(url)}': {reason}") from None
    if not container.streams.video:
        container.close()
        raise MediaError(f"'{shown(url)}' has no video stream")
    video = container.streams.video[0]
    if video.width * video.height > opts.max_pixels:
        container.close()
        raise MediaError(f"'{shown(url)}' announces {video.width}x{video.height} pictures "
                         f"({video.width * video.height:,} pixels), over max_pixels "
                         f"({opts.max_pixels:,})")
    return container


def expected_frames(container: Any, opts: ReadOptions) -> int | None:
    """Frames a file will give with these options, from its header (None if unknown)."""
    return _expected(container, opts)[0]


def _expected(container: Any, opts: ReadOptions) -> tuple[int | None, bool]:
    """(frames a file will give, whether its header counts them exactly rather than
    leaving them to be estimated from a duration)."""
    if opts.loop:
        return opts.max_frames, opts.max_frames is not None
    video = container.streams.video[0]
    # MP4's sample table counts the frames; other headers (AVI's) may count a few more
    exact = bool(video.frames) and "mp4" in container.format.name
    count = video.frames
    rate = video.average_rate or video.guessed_rate
    if not count and rate:  # the stream's duration, else the container's (Matroska)
        seconds = (float(video.duration * video.time_base) if video.duration
                   else container.duration / av.time_base if container.duration else 0.0)
        count = round(seconds * float(rate))
    if count and opts.start and rate:
        count = max(0, count - int(opts.start * float(rate)))
        exact = False
    if opts.max_frames and (not count or opts.max_frames <= count):
        return opts.max_frames, (bool(count) and exact) or opts.max_frames < count
    return count or None, exact


def _signature(stream: Any) -> tuple[Any, ...]:
    """What makes a stream's codec description change: a reconnect may bring new ones."""
    ctx = stream.codec_context
    if stream.type == "video":
        return ctx.name, ctx.width, ctx.height, ctx.extradata
    return ctx.name, stream.sample_rate, ctx.channels, ctx.extradata


def _reason(exc: BaseException, timeout_s: float, url: str) -> str:
    """Why FFmpeg failed, in words (its interrupt on a timeout says "Immediate exit")."""
    if isinstance(exc, av.ExitError | av.error.TimeoutError):
        return f"no answer in {timeout_s:g} s"
    return redact(getattr(exc, "strerror", None) or type(exc).__name__, url)


class LiveTimeline:
    """Maps a live stream's own timestamps onto a monotonic timeline and wall-clock capture
    times, across reconnects."""

    def __init__(self) -> None:
        self.next_s = 0.0  # where the next frame goes when nothing better is known
        self.last_s: float | None = None
        self.last_pts = -1
        self.frame_s = 1 / 30
        self.anchor: tuple[float, float] | None = None  # (stream time, timeline time)
        self.wall: float | None = None  # monotonic clock at timeline 0 (earliest arrival)

    def reconnected(self, gap_s: float) -> None:
        """A new connection: its clock restarts; the time away becomes a gap."""
        self.anchor = None
        self.wall = None
        if self.last_s is not None:
            self.next_s = self.last_s + max(self.frame_s, gap_s)

    @property
    def offset_s(self) -> float | None:
        """Timeline minus stream time for this connection, once known."""
        return None if self.anchor is None else self.anchor[1] - self.anchor[0]

    def reached(self, out_s: float) -> None:
        """A packet was handed over at ``out_s`` on the timeline (pictures copied rather
        than decoded): a reconnect continues after it."""
        if self.last_s is None or out_s > self.last_s:
            self.last_s, self.next_s = out_s, out_s + self.frame_s

    def place(self, t: float | None, now: float) -> tuple[int, float]:
        """(pts in 1/90000, captured) for a frame with stream time ``t`` arriving at ``now``."""
        if t is not None and (self.anchor is None or t + self.anchor[1] - self.anchor[0]
                              < self.next_s - self.frame_s):
            self.anchor = (t, self.next_s)  # first timed frame, or the clock jumped back
        out = self.next_s if t is None or self.anchor is None else (
            self.anchor[1] + t - self.anchor[0])
        if self.last_s is not None and out > self.last_s:
            self.frame_s = min(1.0, max(0.001, 0.9 * self.frame_s + 0.1 * (out - self.last_s)))
        pts = max(round(out / LIVE_TIME_BASE), self.last_pts + 1)
        out = float(pts * LIVE_TIME_BASE)
        self.last_pts, self.last_s, self.next_s = pts, out, out + self.frame_s
        self.wall = now - out if self.wall is None else min(self.wall, now - out)
        return pts, self.wall + out


class StreamReader:
    """Reads one URL on a thread and puts ``(kind, reader, item)`` on the node's queue.

    Kinds: ``frame`` (a Frame), ``audio`` (an AudioPacket), ``event`` (a dict for the
    ``events`` port), ``error`` (an exception the node raises), ``failed`` (a MediaError: a
    live stream gave up) and ``end`` (the reader is done). The node calls :meth:`taken`
    with the kind of every frame, audio packet and event it takes, which frees its slot.
    ``count(what, n)`` counts what the reader loses (damaged packets, drops).
    """

    def __init__(self, node: str, stream: str, url: str, opts: ReadOptions,
                 out: queue.Queue[tuple[str, StreamReader, Any]], stop: threading.Event,
                 count: Callable[[str, int], None], container: Any = None) -> None:
        self.node = node
        self.stream = stream
        self.url = url
        self.shown_url = shown(url)
        self.opts = opts
        self.out = out
        self.stop = stop  # the graph is stopping
        self.removed = threading.Event()  # this stream alone is stopping
        self.container = container  # a file already opened (and checked) by the node
        self.count = count
        self.slots = {"frame": threading.Semaphore(FRAME_SLOTS),
                      "audio": threading.Semaphore(AUDIO_SLOTS),
                      "packet": threading.Semaphore(AUDIO_SLOTS),
                      "event": threading.Semaphore(EVENT_SLOTS)}
        self.timeline = LiveTimeline()
        self.generation = 0
        self.lock = threading.Lock()
        self.index = 0
        self.codecs: dict[str, Codec] = {}  # by stream type: audio, video
        self.signatures: dict[str, tuple[Any, ...]] = {}
        self.keyed = False
        self.last_audio_pts: int | None = None
        # Watchdog state: when the thread last made progress, and the limit for its phase.
        self.beat = time.monotonic()
        self.limit_s: float | None = None
        self.down_since: float | None = None
        self.attempts = 0  # connection attempts since the stream was last up
        self.ever_connected = False
        self.damaged = 0
        self.broken: str | None = None  # why a file's reading stopped before its end
        self.ended = False
        self.thread: threading.Thread | None = None

    # -- control (node thread) ---------------------------------------------------------------

    def start(self) -> None:
        """Start (or, after a stall, restart) reading on a fresh thread."""
        self.thread = threading.Thread(target=self._run, args=(self.generation,),
                                       name=f"read:{self.node}:{self.stream}", daemon=True)
        self.thread.start()

    def remove(self) -> None:
        """Stop this stream (its camera was taken out of the sources)."""
        self.removed.set()

    def taken(self, kind: str) -> None:
        """The node took one of this reader's frames, audio packets or events."""
        self.slots[kind].release()

    def check(self, now: float) -> None:
        """The watchdog: replace a thread that has been stuck inside FFmpeg too long."""
        limit = self.limit_s
        if self.ended or limit is None or now - self.beat <= limit + WATCHDOG_GRACE_S:
            return
        with self.lock:
            self.generation += 1
            self.limit_s = None
        reason = f"no data for {now - self.beat:.1f} s"
        self._disconnected(reason)
        self.start()

    # -- reading (reader thread) -------------------------------------------------------------

    def _current(self, gen: int) -> bool:
        return gen == self.generation and not self.stop.is_set() and not self.removed.is_set()

    def _run(self, gen: int) -> None:
        try:
            if self.opts.live:
                self._live(gen)
            else:
                self._file(gen)
        except Exception as exc:  # a bug or an unforeseen error: fail the graph, loudly
            self._put("error", exc, gen)
        finally:
            with self.lock:
                if gen == self.generation:
                    self.ended = True
                    self.limit_s = None
                    self.out.put(("end", self, None))

    def _file(self, gen: int) -> None:
        container = self.container or open_container(self.url, self.opts)
        container.streams.video[0].thread_type = "AUTO"  # frame + slice threads: fast decode
        expected = _expected(container, self.opts)
        try:
            offset_s = 0.0
            while True:
                end_s, count = self._file_pass(container, gen, offset_s)
                if not self.opts.loop or count == 0 or not self._current(gen):
                    break
                offset_s = end_s
                container.seek(0)
        finally:
            container.close()
        if self._current(gen):
            self._report_damage(expected)

    def _report_damage(self, expected: tuple[int | None, bool]) -> None:
        """Say once, in one line, what a damaged or truncated file lost; count it; with
        ``strict`` fail the run instead. A count estimated from a duration is trusted to
        within 2 frames or 2 %."""
        count, exact = expected
        lost = max(0, count - self.index) if count and not self.opts.loop else 0
        if not exact and count and lost <= max(2, count // 50):
            lost = 0
        if not (lost or self.damaged or self.broken):
            return
        parts = []
        if lost:
            parts.append(f"{lost} of {count} frames lost")
        if self.damaged:
            parts.append(f"{self.damaged} damaged packets skipped")
        if self.broken:
            parts.append(f"reading stopped early: {self.broken}")
        self.count("frames_lost", lost)
        message = f"'{self.shown_url}' is damaged: {'; '.join(parts)}"
        if self.opts.strict:
            raise MediaError(message + " (strict: true)")
        log.warning("node '%s': %s", self.node, message)

    def _live(self, gen: int) -> None:
        opts = self.opts
        backoff = Backoff(opts.backoff_initial, opts.backoff_max, opts.max_retries)
        while self._current(gen):
            self._phase(opts.open_timeout)
            opened = time.monotonic()
            self.attempts += 1
            try:
                container = open_container(self.url, opts)
            except (MediaError, FileNotFoundError) as exc:
                self._phase(None)
                self._failed_attempt(str(exc), backoff)
                if not backoff.wait(self.stop) or not self._current(gen):
                    if backoff.exhausted():
                        self._gave_up(backoff, str(exc))
                    return
                continue
            try:
                reason = self._session(container, gen, opened, backoff)
                if self._current(gen):  # said now: closing may wait on a frozen server
                    self._disconnected(reason)
            finally:
                self._phase(None)
                container.close()
            if not self._current(gen):
                return
            if not backoff.wait(self.stop) or not self._current(gen):
                if backoff.exhausted():
                    self._gave_up(backoff, reason)
                return

    def _phase(self, limit_s: float | None) -> None:
        self.beat = time.monotonic()
        self.limit_s = limit_s

    def _session(self, container: Any, gen: int, opened: float, backoff: Backoff) -> str:
        """Read one connection until it ends; returns why it ended."""
        video = container.streams.video[0]
        video.thread_type = "SLICE"  # frame threads would hold frames back: latency
        sited = cosited(video.codec_context.name)
        audio = container.streams.audio[0] if container.streams.audio else None
        decode, copy = self.opts.decode, self.opts.packets
        self.timeline.reconnected(0.0 if self.down_since is None
                                  else time.monotonic() - self.down_since)
        self._phase(self.opts.read_timeout)
        self.keyed = False  # a copy of the pictures starts at a keyframe, on each connection
        started = False  # the connection's first picture has come
        early: list[Any] = []  # packets that came before the first frame placed the timeline
        closing_at: float | None = None  # max_frames reached: the sound is read up to here
        deadline = 0.0
        try:
            for packet in container.demux(*(s for s in (video, audio) if s is not None)):
                arrived = time.monotonic()
                if not self._current(gen) or (closing_at is not None and arrived > deadline):
                    return "stopped" if closing_at is None else "max_frames reached"
                if arrived - self.beat >= self.opts.read_timeout:
                    # FFmpeg's interrupted read hands over what it had: the stall is over
                    return f"no answer in {self.opts.read_timeout:g} s"
                if packet.stream is audio or copy:
                    if packet.size and (packet.stream is audio or not decode):
                        self.beat = arrived  # progress (a decoder's is a decoded picture)
                    if packet.stream is video and not decode and packet.size and \
                            self.timeline.offset_s is None:
                        if packet.dts is None and packet.pts is None:
                            continue
                        # no pictures are decoded: the first packet places the timeline
                        self.timeline.place(float((packet.pts if packet.pts is not None
                                                   else packet.dts) * packet.time_base),
                                            arrived)
                        if not started:
                            started = True
                            self._started(arrived - opened, backoff)
                        early = self._flush(early, gen)
                    if self.timeline.offset_s is None:
                        early = [*early[-AUDIO_SLOTS + 1:], packet]
                    elif packet.stream is video and closing_at is not None:
                        pass  # the pictures are done; only sound is still wanted
                    elif not self._live_packet(packet, gen, closing_at):
                        return "max_frames reached"  # the sound has reached the last frame
                    elif packet.stream is video and not decode and packet.size:
                        self.index += 1
                        closing_at = self._closing()
                        if closing_at is not None:
                            if audio is None:
                                return "max_frames reached"
                            deadline = arrived + 1.0
                if packet.stream is audio or not decode or closing_at is not None:
                    continue
                for vf in self._decode(packet):
                    # progress is a decoded picture: FFmpeg's interrupted read hands over
                    # a damaged packet first, which must not reset the watchdog
                    now = self.beat = time.monotonic()
                    pts, captured = self.timeline.place(vf.time, now)
                    if not started:
                        started = True
                        self._started(now - opened, backoff)
                    early = self._flush(early, gen)
                    self._put_frame(Frame(pts=pts, time_base=LIVE_TIME_BASE, stream=self.stream,
                                          index=self.index, captured=captured,
                                          **self._pixels(vf, sited)), gen)
                    closing_at = self._closing()
                    if closing_at is not None:
                        if audio is None:
                            return "max_frames reached"
                        deadline = now + 1.0
                        break
        except (av.FFmpegError, OSError) as exc:
            return _reason(exc, self.opts.read_timeout, self.url)
        return "end of stream"

    def _started(self, first_s: float, backoff: Backoff) -> None:
        """The first picture of a connection has come."""
        backoff.reset()
        self._connected(first_s)

    def _flush(self, early: list[Any], gen: int) -> list[Any]:
        """Once a picture has placed the timeline, hand over the packets that came before
        it (what overlaps it is kept); returns what must still wait."""
        if self.timeline.offset_s is None:  # the first picture had no time of its own
            return early
        for held in early:
            self._live_packet(held, gen)
        return []

    def _closing(self) -> float | None:
        """After ``max_frames`` pictures the stream is done (no reconnect) and only its
        sound up to the end of the last picture is still read: the timeline time up to
        which, or None while pictures are wanted."""
        if self.opts.max_frames and self.index >= self.opts.max_frames:
            self.removed.set()
            return self.timeline.next_s
        return None

    def _live_packet(self, packet: Any, gen: int, until: float | None = None) -> bool:
        """Hand over one packet on the stream's timeline, unless it starts at ``until``
        (seconds on that timeline) or later: then return False. A copy of the pictures
        starts at a keyframe; what comes before one is dropped (and counted)."""
        offset = self.timeline.offset_s
        if offset is None or not packet.size:
            return True
        tb = packet.time_base
        stamp = packet.pts if packet.pts is not None else packet.dts
        if stamp is None:  # a camera's first packet may come without one: it is now
            last = self.timeline.last_s or 0.0
            shift, pts = 0, round(last / tb)
        else:
            shift = round((stamp * tb + offset) / tb) - stamp
            pts = stamp + shift
        if until is not None and pts * tb >= until:
            return False
        stream = packet.stream
        if stream.type == "video":
            if not (self.keyed or packet.is_keyframe):
                self.count("packets_before_keyframe", 1)
                return True
            self.keyed = True
            self.timeline.reached(float(pts * tb))
            item = packet_of(packet, self._codec(stream, packet), self.stream, shift)
            dts = item.dts if item.dts is not None else pts
            self._slotted("packet", dataclasses.replace(item, pts=pts, dts=dts), gen, wait=True)
            return True
        if self.last_audio_pts is not None and pts <= self.last_audio_pts:
            return True
        self.last_audio_pts = pts
        item = packet_of(packet, self._codec(stream, packet), self.stream, shift)
        # a camera's audio dts restart with each connection: on our timeline dts = pts
        self._put_audio(dataclasses.replace(item, pts=pts, dts=pts), gen)
        return True

    def _codec(self, stream: Any, packet: Any) -> Codec:
        """The codec of this stream's sound or pictures, described once (again if a
        reconnect changed it)."""
        known = self.codecs.get(stream.type)
        if known is None or self.signatures.get(stream.type) != _signature(stream):
            known = self.codecs[stream.type] = codec_of(stream, packet)
            self.signatures[stream.type] = _signature(stream)
        return known

    def _file_pass(self, container: Any, gen: int, offset_s: float) -> tuple[float, int]:
        """One pass over a file from ``start``; returns (end time, frames produced)."""
        video = container.streams.video[0]
        sited = cosited(video.codec_context.name)
        audio = container.streams.audio[0] if container.streams.audio else None
        decode, copy = self.opts.decode, self.opts.packets
        start = self.opts.start
        vtb = Fraction(video.time_base)
        if start:
            container.seek(int(start / video.time_base), stream=video)
        v_shift = round(offset_s / vtb)
        frame_s = float(1 / (video.average_rate or 30))
        end_s, count = offset_s, 0
        meta = {"source": Path(self.url).name}
        try:
            for packet in container.demux(*(s for s in (video, audio) if s is not None)):
                if not self._current(gen):
                    break
                if packet.stream is audio:
                    if packet.dts is None or not packet.size or (
                            start and packet.pts is not None and (
                                packet.pts + (packet.duration or 0)) * packet.time_base <= start):
                        continue  # sound that ends before the start (what overlaps it stays)
                    shift = round(offset_s / packet.time_base) if offset_s else 0
                    item = packet_of(packet, self._codec(audio, packet), self.stream, shift)
                    if not self._put_audio(item, gen):
                        break
                    continue
                if copy and packet.size:
                    if self.opts.max_frames and not decode and self.index >= self.opts.max_frames:
                        return end_s, 0
                    item = packet_of(packet, self._codec(video, packet), self.stream, v_shift)
                    if not self._slotted("packet", item, gen, wait=True):
                        break
                    if not decode:
                        self.index += 1
                        count += 1
                        if item.time is not None:
                            end_s = max(end_s, item.time + frame_s)
                if not decode:
                    continue
                for vf in self._decode(packet):
                    if start and vf.time is not None and vf.time < start - 1e-6:
                        continue
                    if self.opts.max_frames and self.index >= self.opts.max_frames:
                        return end_s, 0
                    pts = None if vf.pts is None else vf.pts + v_shift
                    frame = Frame(pts=pts, time_base=vtb, stream=self.stream, index=self.index,
                                  captured=time.monotonic(), meta=meta,
                                  **self._pixels(vf, sited))
                    if frame.time is not None:
                        end_s = max(end_s, frame.time + frame_s)
                    count += 1
                    if not self._put_frame(frame, gen):
                        break
        except av.FFmpegError as exc:
            # A truncated file ends here: keep what was decoded; _report_damage says so.
            self.broken = str(exc.strerror or exc)
        return end_s, count

    def _decode(self, packet: Any) -> Iterator[Any]:
        try:
            yield from packet.decode()
        except av.InvalidDataError as exc:
            self.damaged += 1
            self.count("damaged_packets", 1)
            if self.damaged == 1 and self.opts.live:  # a file's damage is reported at its end
                log.warning("node '%s': skipping damaged data in '%s' (%s)", self.node,
                            self.shown_url, exc.strerror or exc)

    def _pixels(self, vf: Any, sited: bool) -> dict[str, Any]:
        """A decoded picture as a frame holds it: the decoder's own in host memory, or RGB
        already made on the GPU from NVDEC's."""
        if on_device(vf):
            return {"_image": device_image(vf, sited)}
        if self.opts.hwaccel:  # asked for, but NVDEC passed this stream to software
            tell_once(self.node, self.url, f"NVDEC does not decode '{self.shown_url}' "
                      "(its codec or profile): decoding in software")
        return {"native": DecodedPicture(vf, sited)}

    # -- handing over ------------------------------------------------------------------------

    def _put_frame(self, frame: Frame, gen: int) -> bool:
        if not self._slotted("frame", frame, gen, wait=True):
            return False
        self.index += 1
        return True

    def _put_audio(self, item: Any, gen: int) -> bool:
        """Hand over an audio packet: a file's reader waits for room, a live one drops it
        (counted) rather than fall behind the camera."""
        if self._slotted("audio", item, gen, wait=not self.opts.live):
            return True
        if self._current(gen):
            self.count("audio_dropped", 1)
            return True
        return False

    def _slotted(self, kind: str, item: Any, gen: int, wait: bool) -> bool:
        """Put ``item`` once a slot of its kind is free; False if it was not put."""
        slots = self.slots[kind]
        if not wait:
            if not slots.acquire(blocking=False):
                return False
        else:
            limit, self.limit_s = self.limit_s, None  # waiting for the node is no stall
            try:
                while not slots.acquire(timeout=0.2):
                    if not self._current(gen):
                        return False
            finally:
                self.beat = time.monotonic()
                self.limit_s = limit
        if not self._put(kind, item, gen):
            slots.release()
            return False
        return True

    def _put(self, kind: str, item: Any, gen: int) -> bool:
        with self.lock:
            if gen != self.generation:
                return False
            self.out.put((kind, self, item))
            return True

    # -- events ------------------------------------------------------------------------------

    def _event(self, event: str, **fields: Any) -> None:
        record = {"event": event, "node": self.node, "stream": self.stream,
                  "url": self.shown_url, "time": round(time.time(), 3), **fields}
        if self.slots["event"].acquire(blocking=False):
            self.out.put(("event", self, record))
        else:  # the node is not taking events: a flapping camera must not grow the queue
            self.count("events_dropped", 1)

    def _connected(self, first_frame_s: float) -> None:
        if not self.ever_connected and self.down_since is None:
            self.ever_connected = True
            self.attempts = 0
            self._event("connected", first_frame_s=round(first_frame_s, 3))
            return
        self.ever_connected = True
        down_s = time.monotonic() - (self.down_since or time.monotonic())
        log.info("node '%s': stream '%s' reconnected after %.1f s (%d attempts)", self.node,
                 self.stream, down_s, self.attempts)
        self._event("reconnected", down_s=round(down_s, 3), attempts=self.attempts,
                    first_frame_s=round(first_frame_s, 3))
        self.down_since = None
        self.attempts = 0

    def _disconnected(self, reason: str) -> None:
        if self.down_since is not None:
            return
        self.down_since = time.monotonic()
        log.warning("node '%s': stream '%s' (%s) disconnected: %s; reconnecting with backoff",
                    self.node, self.stream, self.shown_url, reason)
        self._event("disconnected", reason=reason)

    def _failed_attempt(self, reason: str, backoff: Backoff) -> None:
        if self.opts.max_retries == 0:
            return  # no retry: the error itself is the message
        if self.down_since is None:
            # Never connected yet: say so once, clearly; later failures are debug noise.
            self.down_since = time.monotonic()
            log.warning("node '%s': stream '%s': %s; retrying every %.1f s to %.1f s%s",
                        self.node, self.stream, redact(reason, self.url), self.opts.backoff_initial,
                        self.opts.backoff_max,
                        "" if self.opts.max_retries is None
                        else f", {self.opts.max_retries} times at most")
            self._event("connect_failed", reason=redact(reason, self.url))
        else:
            log.debug("node '%s': stream '%s': attempt %d: %s (next in %.1f s)", self.node,
                      self.stream, self.attempts, redact(reason, self.url), backoff.next_delay())

    def _gave_up(self, backoff: Backoff, reason: str) -> None:
        self._event("gave_up", attempts=backoff.attempts, reason=redact(reason, self.url))
        tries = "no retry" if backoff.attempts == 1 else f"{backoff.attempts} attempts"
        self.out.put(("failed", self, MediaError(
            f"stream '{self.stream}': gave up after {tries}: {redact(reason, self.url)}")))
