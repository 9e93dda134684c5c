"""``mqtt_sink`` against Debian's mosquitto on a loopback port: every message arrives with
what ``jsonl_sink`` writes; a broker killed and restarted mid-run costs counted messages and
never a frame of the recording; the last will says ``offline`` after ``kill -9``; a wrong
password is one line; TLS works with the broker's certificate."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipeline.core.executor import RunStatus
from pipeline.kit.testing import run_graph

from .conftest import ffprobe, stream, vidgraph
from .live_servers import Broker, Listener, has_mosquitto, need, wait_for
from .test_live import Running, spawn


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    need("Debian's mosquitto", has_mosquitto())
    started = Broker(tmp_path).start()
    yield started
    started.kill()


def frames_of(listener: Listener, graph: str, stream_name: str) -> list[dict]:
    return [json.loads(p) for p in listener.on(f"vidgraph/{graph}/{stream_name}/frames")]


def test_every_frame_arrives_as_jsonl_writes_it_and_the_status_is_retained(
        broker: Broker, tmp_path: Path) -> None:
    listener = Listener(broker)
    lines = tmp_path / "faces.jsonl"
    try:
        result = run_graph({"name": "faces", "nodes": {
            "src": {"plugin": "testsrc", "pattern": "person", "width": 320, "height": 240,
                    "duration": 1},
            "faces": {"plugin": "mtcnn", "input": "src"},
            "mq": {"plugin": "mqtt_sink", "input": "faces", "qos": 1,
                   "url": f"mqtt://127.0.0.1:{broker.port}"},
            "log": {"plugin": "jsonl_sink", "input": "faces", "path": str(lines)}}})
        assert result.status is RunStatus.OK, result.error
        wait_for(lambda: len(frames_of(listener, "faces", "src")) == 30, 5, "30 messages")
    finally:
        listener.stop()
    written = [json.loads(line) for line in lines.read_text().splitlines()]
    assert frames_of(listener, "faces", "src") == written
    assert [m["index"] for m in written] == list(range(30))
    assert sum(bool(m["detections"]) for m in written) >= 25  # the astronaut's face
    assert {"box", "score", "landmarks"} <= set(written[0]["detections"][0])
    assert listener.on("vidgraph/faces/status") == ["online", "offline"]
    counts = result.metrics.nodes["mq"].counters
    assert counts.get("mqtt_published") == 30 and "mqtt_dropped" not in counts
    late = Listener(broker)  # a subscriber that comes later reads the retained status
    try:
        assert wait_for(lambda: late.on("vidgraph/faces/status"), 5, "the retained status") \
            == ["offline"]
    finally:
        late.stop()


def test_a_broker_restart_costs_counted_messages_never_a_recorded_frame(
        broker: Broker, cameras, tmp_path: Path) -> None:
    camera = cameras(audio=False)
    out = tmp_path / "cam.mp4"
    listener = Listener(broker)
    running = Running({"name": "site", "nodes": {
        "cam": {"plugin": "video_source", "url": camera.url, "max_frames": 150},
        "rec": {"plugin": "video_sink", "input": "cam", "path": str(out), "preset": "ultrafast"},
        "mq": {"plugin": "mqtt_sink", "input": "cam", "events": "cam.events",
               "url": f"mqtt://127.0.0.1:{broker.port}", "max_queued": 10}}})
    try:
        wait_for(lambda: len(frames_of(listener, "site", "cam")) >= 10, 15, "first messages")
        broker.kill()
        time.sleep(1.5)  # 45 frames while the broker is away: 10 wait, the rest are dropped
        broker.start()
        running.thread.join(30)
        result = running.stop()
    finally:
        listener.stop()
    assert result.status is RunStatus.OK, result.error
    assert int(stream(ffprobe(out), "video")["nb_read_frames"]) == 150
    got = [m["index"] for m in frames_of(listener, "site", "cam")]
    assert got == sorted(got) and got[-1] == 149  # the messages came back after the restart
    counts = result.metrics.nodes["mq"].counters
    assert counts.get("mqtt_dropped", 0) >= 20
    events = [json.loads(p)["event"] for p in listener.on("vidgraph/site/cam/events")]
    assert events[0] == "connected"
    assert counts["mqtt_published"] + counts["mqtt_dropped"] == 150 + len(events)
    assert len(got) >= 150 - counts["mqtt_dropped"] - 15  # what was on the wire at the kill


def test_the_last_will_says_offline_after_kill_9(broker: Broker, tmp_path: Path) -> None:
    graph = tmp_path / "forever.yaml"
    graph.write_text(yaml.safe_dump({"name": "forever", "nodes": {
        "src": {"plugin": "testsrc", "width": 64, "height": 64, "duration": 0,
                "realtime": True},
        "mq": {"plugin": "mqtt_sink", "input": "src",
               "url": f"mqtt://127.0.0.1:{broker.port}"}}}))
    listener = Listener(broker, "vidgraph/forever/status")
    proc = spawn(graph, "-q")
    try:
        wait_for(lambda: listener.on("vidgraph/forever/status") == ["online"], 20, "online")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        wait_for(lambda: listener.on("vidgraph/forever/status") == ["online", "offline"], 10,
                 "the last will")
    finally:
        listener.stop()


def test_credentials_a_wrong_password_is_one_line_and_never_shown(tmp_path: Path) -> None:
    need("Debian's mosquitto", has_mosquitto())
    broker = Broker(tmp_path, user=("cam", "s3cret pass")).start()
    graph = tmp_path / "g.yaml"
    try:
        for password, status in (("wrong%20one", 1), ("s3cret%20pass", 0)):
            graph.write_text(yaml.safe_dump({"name": "login", "nodes": {
                "src": {"plugin": "testsrc", "width": 64, "height": 64, "duration": 0.2},
                "mq": {"plugin": "mqtt_sink", "input": "src",
                       "url": f"mqtt://cam:{password}@127.0.0.1:{broker.port}"}}}))
            done = vidgraph("run", "-q", str(graph))
            assert done.returncode == status, done.stderr
            assert "wrong" not in done.stderr and "s3cret" not in done.stderr
            if status:
                assert done.stderr == (f"error: node 'mq': mqtt://***@127.0.0.1:{broker.port} "
                                       "refused the connection: Not authorized\n")
    finally:
        broker.kill()


def test_an_absent_broker_is_a_warning_unless_required(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    nodes = {"src": {"plugin": "testsrc", "width": 64, "height": 64, "duration": 0.2},
             "mq": {"plugin": "mqtt_sink", "input": "src", "url": "mqtt://127.0.0.1:9",
                    "connect_timeout": 0.5}}
    graph.write_text(yaml.safe_dump({"nodes": nodes}))
    done = vidgraph("run", "-q", str(graph), "--stats", str(tmp_path / "stats.json"))
    assert done.returncode == 0, done.stderr
    assert "mqtt://127.0.0.1:9 did not answer in 0.5 s; messages wait" in done.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["nodes"]["mq"]["counts"]["mqtt_dropped"] == 6
    done = vidgraph("run", "-q", str(graph), "--set", "mq.required=true")
    assert (done.returncode, done.stderr) == (
        1, "error: node 'mq': mqtt://127.0.0.1:9 did not answer in 0.5 s\n")


def test_tls_with_the_brokers_certificate(tmp_path: Path) -> None:
    need("Debian's mosquitto", has_mosquitto())
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    broker = Broker(tmp_path, tls=(cert, key)).start()
    listener = Listener(broker, tls_ca=cert)
    try:
        result = run_graph({"name": "tls", "nodes": {
            "src": {"plugin": "testsrc", "width": 64, "height": 64, "duration": 0.2},
            "mq": {"plugin": "mqtt_sink", "input": "src", "ca_file": str(cert),
                   "url": f"mqtts://127.0.0.1:{broker.port}", "qos": 1}}})
        assert result.status is RunStatus.OK, result.error
        wait_for(lambda: len(frames_of(listener, "tls", "src")) == 6, 5, "6 messages over TLS")
        with pytest.raises(Exception, match="did not answer in 2 s"):  # no CA: not trusted
            run_graph({"nodes": {
                "src": {"plugin": "testsrc", "width": 64, "height": 64, "duration": 0.2},
                "mq": {"plugin": "mqtt_sink", "input": "src", "required": True,
                       "connect_timeout": 2, "url": f"mqtts://127.0.0.1:{broker.port}"}}})
    finally:
        listener.stop()
        broker.kill()
