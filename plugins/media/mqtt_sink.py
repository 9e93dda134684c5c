"""``mqtt_sink``: what a graph sees, as JSON messages on an MQTT broker (paho-mqtt)."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import re
import threading
from pathlib import PurePath
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from pydantic import Field, field_validator

from pipeline.core.errors import MediaError
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Sink

from .jsonl_sink import RECORD_INPUTS, frame_record, require_records
from .live import redact, shown, userinfo

log = logging.getLogger("vidgraph")
#: what may not be in one level of a topic ('/' separates levels, '+' and '#' are wildcards)
_NOT_IN_TOPIC = re.compile(r"[/+#\s\x00]+")


class MqttSinkParams(Params):
    """Parameters of ``mqtt_sink``."""

    url: str = Field(description="mqtt://[user:password@]host[:port] (mqtts:// for TLS)")
    frames_topic: str = Field("vidgraph/{graph}/{stream}/frames",
                              description="topic of the per-frame messages ({graph}, {node}, "
                                          "{stream})")
    events_topic: str = Field("vidgraph/{graph}/{stream}/events",
                              description="topic of the event messages")
    status_topic: str = Field("vidgraph/{graph}/status",
                              description="retained 'online'/'offline' (the last will)")
    qos: Literal[0, 1, 2] = Field(0, description="MQTT quality of service of the messages")
    retain: bool = Field(False, description="ask the broker to keep each topic's last message")
    max_queued: int = Field(1000, ge=1, le=1_000_000,
                            description="messages held while the broker is slow or away; "
                                        "beyond, the oldest are dropped (and counted)")
    required: bool = Field(False, description="fail when the broker cannot be reached at "
                                              "start (else: a warning, and retries)")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to wait for the broker "
                                                          "at start")
    keepalive: int = Field(30, ge=5, le=3600, description="seconds between pings")
    ca_file: str | None = Field(None, description="CA certificates for mqtts:// (default: "
                                                  "the system's)")
    client_id: str = Field("", description="MQTT client id (default: one the broker makes)")

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        try:
            broker(url)
        except ValueError:
            raise ValueError(f"'{shown(url)}' is not mqtt://host[:port] or "
                             "mqtts://host[:port]") from None
        return url


def broker(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS) of an ``mqtt://`` or ``mqtts://`` URL; ValueError if it is not one.
    The user information is left out first: a password may hold any character."""
    scheme, _, rest = url.partition("://")
    parts = urlsplit(f"{scheme}://{rest.rpartition('@')[2]}")
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or \
            parts.path not in ("", "/"):
        raise ValueError(url)
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class MqttSink(Sink):
    """Publishes a JSON message per frame (what ``jsonl_sink`` writes: stream, index, time,
    detections, labels) to ``frames_topic``, and each record of the ``events`` input to
    ``events_topic``; connect ``input``, ``events`` or both.

    The video path never waits for the broker: messages go to a queue of ``max_queued``
    that a network thread empties; while the broker is slow or away the oldest are dropped
    and counted (``mqtt_dropped`` in ``--stats`` and ``/metrics``). The client reconnects
    with backoff (1 s to 30 s). A retained ``online`` goes to ``status_topic`` on every
    connection, and the broker publishes ``offline`` there (the last will) if the process
    dies without saying goodbye. The password in ``url`` never reaches a log line.

    ```yaml
    nodes:
      src: {plugin: testsrc, duration: 0.1}
      mq: {plugin: mqtt_sink, input: src, url: "mqtt://127.0.0.1:1", connect_timeout: 0.1}
    ```
    """

    name = "mqtt_sink"
    summary = "JSON messages per frame and per event to an MQTT broker, with a last will"
    inputs = RECORD_INPUTS
    Params = MqttSinkParams
    params: MqttSinkParams

    def open(self) -> None:
        require_records(self.context)
        p = self.params
        self.where = shown(p.url)
        graph = self.context.graph
        if PurePath(graph).suffix in (".yaml", ".yml"):
            graph = PurePath(graph).stem  # a graph without a name is named by its file
        self.fields = {"graph": _segment(graph), "node": _segment(self.context.name)}
        self.status = p.status_topic.format(**self.fields)
        self.pending: collections.deque[tuple[str, bytes]] = collections.deque()
        self.lock = threading.Lock()
        self.wake = threading.Condition(self.lock)
        self.up = threading.Event()
        self.refused: str | None = None  # the broker said no (credentials): not retried
        self.closing = False
        self.opened = False  # open() has returned: later refusals are logged, not raised
        host, port, tls = broker(p.url)
        self.client = self._client(tls)
        self.client.connect_async(host, port, p.keepalive)
        self.client.loop_start()
        if not self.up.wait(p.connect_timeout) or self.refused:
            self._not_connected()
        self.opened = True
        self.sender = threading.Thread(target=self._send, name=f"mqtt:{self.context.name}",
                                       daemon=True)
        self.sender.start()

    def _client(self, tls: bool) -> mqtt.Client:
        p = self.params
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=p.client_id)
        info = userinfo(p.url)
        if info:
            user, _, password = info.partition(":")
            client.username_pw_set(unquote(user), unquote(password) if password else None)
        if tls:
            try:
                client.tls_set(ca_certs=p.ca_file)
            except (OSError, ValueError) as exc:
                raise MediaError(f"ca_file '{p.ca_file}': {exc}") from None
        client.will_set(self.status, "offline", qos=1, retain=True)
        client.reconnect_delay_set(1, 30)
        client.max_queued_messages_set(p.max_queued)  # paho's own queue is bounded too
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        return client

    def _not_connected(self) -> None:
        """The broker did not take us at start: a refusal is an error, silence a warning
        (retried) unless ``required``."""
        if self.refused:
            self.client.loop_stop()
            raise MediaError(f"{self.where} refused the connection: {self.refused}")
        if self.params.required:
            self.client.loop_stop()
            raise MediaError(f"{self.where} did not answer in {self.params.connect_timeout:g} s")
        log.warning("node '%s': %s did not answer in %g s; messages wait (at most %d) while "
                    "it retries", self.context.name, self.where, self.params.connect_timeout,
                    self.params.max_queued)

    # -- paho's network thread -----------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                    _properties: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            if self.opened:
                log.error("node '%s': %s refused the connection: %s; messages are dropped",
                          self.context.name, self.where, reason)
            else:
                self.up.set()  # wakes open(), which says so and fails
            client.disconnect()
            return
        self.refused = None
        client.publish(self.status, "online", qos=1, retain=True)
        with self.lock:
            self.up.set()
            self.wake.notify()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any,
                       _properties: Any) -> None:
        self.up.clear()
        if not self.closing and not self.refused:
            log.warning("node '%s': %s went away (%s); reconnecting", self.context.name,
                        self.where, redact(str(reason), self.params.url))

    # -- the graph's side ----------------------------------------------------------------

    def write(self, frame: Frame) -> None:
        record = frame_record(frame)
        self._queue(self.params.frames_topic, frame.stream, record)

    def receive(self, port: str, item: Any) -> None:
        stream = item.get("stream") if isinstance(item, dict) else None
        self._queue(self.params.events_topic, str(stream or "graph"), item)

    def _queue(self, template: str, stream: str, record: Any) -> None:
        topic = template.format(**self.fields, stream=_segment(stream))
        payload = json.dumps(record).encode()
        with self.lock:
            if len(self.pending) >= self.params.max_queued:
                self.pending.popleft()
                self.context.count("mqtt_dropped", 1)
            self.pending.append((topic, payload))
            self.wake.notify()

    def _send(self) -> None:
        """Hands queued messages to paho while connected (paho writes them on its thread)."""
        while True:
            with self.lock:
                while not (self.pending and self.up.is_set()) and not self.closing:
                    self.wake.wait(0.5)
                if not self.pending or (self.closing and not self.up.is_set()):
                    return
                topic, payload = self.pending.popleft()
            info = self.client.publish(topic, payload, qos=self.params.qos,
                                       retain=self.params.retain)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.context.count("mqtt_published", 1)
            else:  # the connection went between the check and the publish
                self.context.count("mqtt_dropped", 1)

    def close(self) -> None:
        """Send what is queued (for up to ``connect_timeout`` when connected), say
        ``offline`` and disconnect."""
        with self.lock:
            self.closing = True
            self.wake.notify()
        self.sender.join(self.params.connect_timeout)
        with self.lock:
            left = len(self.pending)
            self.pending.clear()
        if left:
            self.context.count("mqtt_dropped", left)
            log.warning("node '%s': %d messages never reached %s", self.context.name, left,
                        self.where)
        if self.up.is_set():
            goodbye = self.client.publish(self.status, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # gone meanwhile
                goodbye.wait_for_publish(self.params.connect_timeout)
            self.client.disconnect()
        self.client.loop_stop()


def _segment(value: str) -> str:
    """``value`` as one level of a topic."""
    return _NOT_IN_TOPIC.sub("_", value) or "_"
