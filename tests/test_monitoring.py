"""``/metrics``, ``/healthz`` and ``/readyz``: scraped over HTTP with a real client and parsed
with prometheus-client's parser; the counters match what the run wrote, and health follows a
loopback RTSP camera that is killed and comes back."""

from __future__ import annotations

import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pipeline.core import config
from pipeline.core.executor import Executor, RunResult, RunStatus
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry
from pipeline.kit.monitoring import Address, Monitor

from .conftest import ffprobe, stream, vidgraph
from .live_servers import free_port, wait_for
from .test_live import spawn


def get(url: str) -> tuple[int, str]:
    """(status, body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, by (name, labels)."""
    status, text = get(url)
    assert status == 200
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape[(name, frozenset(labels.items()))]


def executor_for(graph: dict[str, Any]) -> Executor:
    doc = config.loads(yaml.safe_dump(graph), "monitored.yaml")
    return Executor(build_graph(doc, Registry.from_entry_points()))


def test_counters_match_the_run_and_health_follows_its_phase(tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    executor = executor_for({"name": "counted", "nodes": {
        "src": {"plugin": "testsrc", "width": 160, "height": 96, "duration": 2,
                "realtime": True},
        "noisy": {"plugin": "add_noise", "input": "src", "sigma": 3},
        "out": {"plugin": "video_sink", "input": "noisy", "path": str(out),
                "preset": "ultrafast"}}})
    monitor = Monitor(executor.metrics, "counted", Address("127.0.0.1", 0))
    url = monitor.start()
    base = url.removesuffix("/metrics")
    try:
        assert get(base + "/healthz") == (503, "starting\n")
        result: list[RunResult] = []
        thread = threading.Thread(target=lambda: result.append(executor.run()))
        thread.start()
        wait_for(lambda: get(base + "/healthz")[0] == 200, 10, "a healthy run")
        assert get(base + "/readyz") == (200, "ok\n")
        during = samples(url)
        assert value(during, "vidgraph_graph_phase", graph="counted", phase="running") == 1
        wait_for(lambda: 25 < value(samples(url), "vidgraph_stream_fps", node="src",
                                    stream="src") < 35, 5, "the source's 30 fps")
        thread.join(30)
        assert result and result[0].status is RunStatus.OK
        assert get(base + "/healthz") == (503, "finished\n")
        after = samples(url)
    finally:
        monitor.stop()
    written = int(stream(ffprobe(out), "video")["nb_read_frames"])
    assert written == 60
    for node in ("src", "noisy", "out"):
        assert value(after, "vidgraph_node_frames_total", node=node, stream="src") == written
        assert value(after, "vidgraph_node_dropped_frames_total", node=node) == 0
        assert value(after, "vidgraph_node_errors_total", node=node) == 0
    assert value(after, "vidgraph_node_latency_seconds_count", node="out") == written
    assert value(after, "vidgraph_node_latency_seconds_bucket", node="out", le="+Inf") == written
    assert 0 < value(after, "vidgraph_node_latency_seconds_sum", node="out") < written * 1.0
    assert value(after, "vidgraph_node_busy_seconds_total", node="out") > 0
    assert value(after, "process_resident_memory_bytes") > 50e6
    # the server is gone with the run's monitor
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_health_fails_while_a_camera_is_away_and_recovers(cameras, tmp_path: Path) -> None:
    camera = cameras(audio=False)
    port = free_port()
    graph = tmp_path / "camera.yaml"
    graph.write_text(yaml.safe_dump({"name": "watched", "nodes": {
        "cam": {"plugin": "video_source", "url": camera.url, "read_timeout": 1,
                "reconnect_delay": 0.2, "reconnect_max_delay": 0.5},
        "out": {"plugin": "null_sink", "input": "cam"}}}))
    proc = spawn(graph, "-q", "--metrics", str(port))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _listening(base) and get(base + "/readyz")[0] == 200, 20,
                 "a connected camera")
        assert get(base + "/healthz") == (200, "ok\n")
        scrape = samples(base + "/metrics")
        assert value(scrape, "vidgraph_stream_connected", node="cam", stream="cam") == 1
        camera.kill()
        _, body = wait_for(lambda: (r := get(base + "/healthz"))[0] == 503 and r, 10,
                           "the health check to fail")
        assert "stream 'cam' (node 'cam'): no frame for" in body
        assert "(read timeout 1 s)" in body
        assert get(base + "/readyz")[0] == 503
        camera.start()
        wait_for(lambda: get(base + "/healthz")[0] == 200, 20, "health after the reconnect")
        scrape = samples(base + "/metrics")
        assert value(scrape, "vidgraph_stream_connected", node="cam", stream="cam") == 1
        assert value(scrape, "vidgraph_stream_reconnects_total", node="cam", stream="cam") >= 1
        assert value(scrape, "vidgraph_stream_last_frame_age_seconds", node="cam",
                     stream="cam") < 1
    finally:
        proc.terminate()
        proc.communicate(timeout=15)
    assert proc.returncode in (0, 130), proc.returncode


def _listening(base: str) -> bool:
    try:
        get(base + "/healthz")
    except urllib.error.URLError:
        return False
    return True


def test_a_bad_address_or_a_taken_port_is_one_clear_line(tmp_path: Path) -> None:
    nodes = {"src": {"plugin": "testsrc", "duration": 0.1},
             "out": {"plugin": "null_sink", "input": "src"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"metrics": "nowhere:99999", "nodes": nodes}))
    done = vidgraph("run", "-q", str(bad))
    assert done.returncode == 2
    assert "metrics 'nowhere:99999' must be a port or HOST:PORT" in done.stderr
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": nodes}))
    done = vidgraph("run", "-q", "--metrics", "localhost:", str(graph))
    assert (done.returncode, done.stderr) == (
        1, "error: --metrics: 'localhost:' is not PORT or HOST:PORT (port 0-65535)\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = vidgraph("run", "-q", "--metrics", str(port), str(graph))
    assert (done.returncode, done.stderr) == (
        1, f"error: --metrics: cannot listen on 127.0.0.1:{port}: Address already in use\n")


def test_preview_and_metrics_share_one_server_and_the_page_links_to_them(
        tmp_path: Path) -> None:
    port = free_port()
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"metrics": port, "nodes": {
        "src": {"plugin": "testsrc", "width": 160, "height": 96, "duration": 0,
                "realtime": True},
        "view": {"plugin": "preview", "input": "src", "port": port}}}))
    proc = spawn(graph, "-q")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _listening(base) and get(base + "/healthz")[0] == 200, 20,
                 "the graph to run")
        status, page = get(base + "/")
        assert status == 200 and 'id="links"' in page
        stats = wait_for(lambda: (s := json.loads(get(base + "/stats.json")[1]))["streams"]
                         and s, 10, "the preview's stream")
        assert stats["links"] == {"metrics": "/metrics", "healthz": "/healthz",
                                  "readyz": "/readyz"}
        assert value(samples(base + "/metrics"), "vidgraph_node_frames_total", node="view",
                     stream="src") > 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err
    assert "already serves" not in err
