"""The parts of live video that need no server: redaction, backoff, the live timeline, camera
lists, default edge policies, multi-stream files and the errors around them."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.core import config
from pipeline.core.edge import EdgePolicy
from pipeline.core.errors import GraphError, ParameterError
from pipeline.core.executor import Executor
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry
from pipeline.kit.testing import run_graph
from plugins.media.clips import make_clip
from plugins.media.live import Backoff, is_live_url, redact, shown
from plugins.media.sources_file import SourcesWatcher, load_sources
from plugins.media.stream_reader import LIVE_TIME_BASE, LiveTimeline

from .conftest import ffprobe, stream, vidgraph


def test_redact_hides_user_and_password_of_every_url() -> None:
    text = "cannot open 'rtsp://admin:s3cr@t@10.0.0.5:554/live' or http://u@h/x.mjpg"
    assert redact(text) == "cannot open 'rtsp://***@10.0.0.5:554/live' or http://***@h/x.mjpg"
    assert redact("rtsp://10.0.0.5/live and /dev/video0") == "rtsp://10.0.0.5/live and /dev/video0"


@pytest.mark.parametrize("password", ["pa ss", "pa/ss", "pw%20d/x yz", "s3cr@t"])
def test_passwords_with_spaces_and_slashes_never_reach_logs_errors_or_events(
        tmp_path: Path, password: str) -> None:
    url = f"rtsp://admin:{password}@127.0.0.1:9/live"
    assert shown(url) == "rtsp://***@127.0.0.1:9/live"
    assert redact(f"cannot open '{url}': refused", url) == (
        "cannot open 'rtsp://***@127.0.0.1:9/live': refused")
    events = tmp_path / "events.jsonl"
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "cam": {"plugin": "video_source", "url": url, "max_retries": 1,
                "reconnect_delay": 0.05},
        "out": {"plugin": "null_sink", "input": "cam"},
        "log": {"plugin": "jsonl_sink", "events": "cam.events", "path": str(events)}}}))
    result = vidgraph("run", str(graph), "-q", "--debug")
    assert result.returncode == 1
    said = result.stderr + events.read_text()
    assert "connect_failed" in said and "gave up" in said
    for secret in {password, *(p for p in password.replace("/", " ").split() if len(p) > 2)}:
        assert secret not in said, secret


def test_live_urls() -> None:
    assert all(is_live_url(u) for u in ("rtsp://h/x", "RTSPS://h/x", "https://h/a.m3u8",
                                        "/dev/video0"))
    assert not any(is_live_url(u) for u in ("in.mp4", "/dev/null", "/dev/video"))


def test_backoff_doubles_to_the_maximum_and_counts_retries() -> None:
    backoff = Backoff(0.5, 10.0)
    delays = []
    for _ in range(7):
        backoff.attempts += 1
        delays.append(backoff.next_delay())
    assert delays == [0.5, 1, 2, 4, 8, 10, 10]
    limited = Backoff(0.01, 0.01, max_retries=2)
    stop = threading.Event()
    assert limited.wait(stop) and limited.wait(stop) and not limited.wait(stop)
    assert limited.exhausted()


def test_backoff_wakes_at_once_when_stopping() -> None:
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert not Backoff(30, 30).wait(stop)
    assert time.monotonic() - started < 1


def test_live_timeline_starts_without_pts_and_survives_a_clock_restart() -> None:
    line = LiveTimeline()
    now = 100.0
    placed = [line.place(None, now)]  # RTSP's first frame has no pts
    for i in range(1, 30):
        placed.append(line.place(5.0 + i / 30, now + i / 30))
    line.reconnected(gap_s=3.0)  # the camera was away 3 s and restarts its clock at 0
    for i in range(30):
        placed.append(line.place(i / 30, now + 4 + i / 30))
    pts = [p for p, _ in placed]
    assert all(b > a for a, b in itertools.pairwise(pts))
    seconds = [float(p * LIVE_TIME_BASE) for p in pts]
    steps = [b - a for a, b in itertools.pairwise(seconds)]
    assert steps[29] == pytest.approx(3.0, abs=0.05)  # the gap
    assert all(s == pytest.approx(1 / 30, abs=0.002) for s in steps[1:29] + steps[30:])
    captured = [c for _, c in placed]
    assert all(c <= now + 4 + 1 for c in captured)
    assert captured[-1] - captured[30] == pytest.approx(29 / 30, abs=0.01)


def test_live_timeline_shows_the_age_of_frames_that_arrive_late() -> None:
    line = LiveTimeline()
    for i in range(10):  # arrive on time
        _, captured = line.place(i / 30, 50.0 + i / 30)
    for i in range(10, 20):  # a burst of buffered frames, all arriving at once
        _, captured = line.place(i / 30, 52.0)
    assert 52.0 - captured == pytest.approx(2.0 - 19 / 30, abs=0.01)


def test_sources_file_errors_name_the_file_and_entry(tmp_path: Path) -> None:
    path = tmp_path / "cams.yaml"
    path.write_text("- {stream: a, url: rtsp://h/1}\n- {stream: 'b c', url: rtsp://h/2}\n")
    with pytest.raises(ParameterError,
                       match=r"cams.yaml: entry 2: stream: stream name 'b c' must be"):
        load_sources(path)
    path.write_text("- {stream: a, url: x}\n- {stream: a, url: y}\n")
    with pytest.raises(ParameterError, match="stream names must be unique"):
        load_sources(path)
    path.write_text("cam: rtsp://h/1\n")
    with pytest.raises(ParameterError, match="expected a YAML list"):
        load_sources(path)


def test_sources_file_expands_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CAM_PASS", "pw")
    path = tmp_path / "cams.yaml"
    path.write_text("- {stream: a, url: 'rtsp://me:${CAM_PASS}@h/1'}\n")
    assert load_sources(path)[0].url == "rtsp://me:pw@h/1"


def test_watcher_applies_edits_and_keeps_sources_through_a_bad_edit(tmp_path: Path,
                                                                     caplog) -> None:
    path = tmp_path / "cams.yaml"
    path.write_text("- {stream: a, url: x}\n")
    applied: list[list[str]] = []
    watcher = SourcesWatcher(path, lambda es: applied.append([e.stream for e in es]))
    watcher.poll()
    path.write_text("- {stream: a, url: x}\n- {stream: b, url: y}\n")
    watcher.poll()
    with caplog.at_level(logging.ERROR, "vidgraph"):
        path.write_text("- {stream: a, url: x}\n- [broken\n")
        watcher.poll()
        watcher.poll()
    path.write_text("- {stream: b, url: y}\n")
    watcher.poll()
    assert applied == [["a"], ["a", "b"], ["b"]]
    assert len([r for r in caplog.records if "keeping the current sources" in r.message]) == 1


def _executor(nodes: dict) -> Executor:
    doc = config.loads(yaml.safe_dump({"nodes": nodes}), "g.yaml")
    return Executor(build_graph(doc, Registry.from_entry_points()))


def test_edges_after_a_live_source_drop_oldest_with_a_small_queue() -> None:
    live = {"plugin": "testsrc", "realtime": True}
    ex = _executor({"src": live, "a": {"plugin": "identity", "input": "src"},
                    "b": {"plugin": "identity", "input": "src", "batch_size": 8},
                    "c": {"plugin": "identity", "input": "src", "policy": "block"},
                    "out": {"plugin": "null_sink", "input": "a"},
                    "out2": {"plugin": "null_sink", "input": "b"},
                    "out3": {"plugin": "null_sink", "input": "c"}})
    edges = {e.dst: e for r in ex.nodes.values() for es in r.outputs.values() for e in es}
    assert (edges["a"].policy, edges["a"].capacity) == (EdgePolicy.DROP_OLDEST, 2)
    assert (edges["b"].policy, edges["b"].capacity) == (EdgePolicy.DROP_OLDEST, 16)
    assert edges["c"].policy is EdgePolicy.BLOCK
    assert (edges["out"].policy, edges["out"].capacity) == (EdgePolicy.BLOCK, 8)
    files = _executor({"src": {"plugin": "testsrc"}, "out": {"plugin": "null_sink",
                                                              "input": "src"}})
    edge = files.nodes["src"].outputs["out"][0]
    assert (edge.policy, edge.capacity) == (EdgePolicy.BLOCK, 8)


@pytest.mark.parametrize(("body", "message"), [
    ({"url": "a.mp4", "sources": [{"stream": "x", "url": "b.mp4"}]}, "either 'url' or 'sources'"),
    ({}, "either 'url' or 'sources'"),
    ({"url": "a.mp4", "streams": ["x"]}, "'streams' needs a 'url' containing {stream}"),
    ({"url": "cam{stream}.mp4"}, "list the names in 'streams'"),
    ({"url": "x", "transport": "sctp"}, "parameter 'transport' = 'sctp'"),
])
def test_video_source_parameter_errors(body: dict, message: str) -> None:
    doc = config.loads(yaml.safe_dump({"nodes": {
        "src": {"plugin": "video_source", **body},
        "out": {"plugin": "null_sink", "input": "src"}}}), "g.yaml")
    with pytest.raises(GraphError, match=message):
        build_graph(doc, Registry.from_entry_points())


def test_stream_template_reads_files_side_by_side_into_one_file_each(tmp_path: Path) -> None:
    make_clip(tmp_path / "cam_a.mp4", seconds=1.0, audio=True)
    make_clip(tmp_path / "cam_b.mp4", seconds=2.0, width=160, height=120, audio=True)
    result = run_graph({"nodes": {
        "cams": {"plugin": "video_source", "url": str(tmp_path / "cam_{stream}.mp4"),
                 "streams": ["a", "b"]},
        "small": {"plugin": "resize", "input": "cams", "width": 96, "batch_size": 4},
        "out": {"plugin": "video_sink", "input": "small", "audio": "cams.audio",
                "path": str(tmp_path / "out" / "{stream}.mp4")}}})
    assert result.status == "ok"
    assert result.metrics.nodes["cams"].frames_out == 90
    for name, frames, height in (("a", 30, 72), ("b", 60, 72)):
        info = ffprobe(tmp_path / "out" / f"{name}.mp4")
        video = stream(info, "video")
        assert video is not None and int(video["nb_read_frames"]) == frames
        assert (video["width"], video["height"]) == (96, height)
        assert stream(info, "audio") is not None


def test_two_streams_into_one_file_is_a_clear_error(tmp_path: Path) -> None:
    make_clip(tmp_path / "a.mp4", seconds=0.5, audio=False)
    make_clip(tmp_path / "b.mp4", seconds=0.5, audio=False)
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "cams": {"plugin": "video_source", "sources": [
            {"stream": "a", "url": str(tmp_path / "a.mp4")},
            {"stream": "b", "url": str(tmp_path / "b.mp4")}]},
        "out": {"plugin": "video_sink", "input": "cams", "path": str(tmp_path / "o.mp4")}}}))
    result = vidgraph("run", str(graph), "-q")
    assert result.returncode == 1
    # Which camera comes first is a race; the message names both.
    assert re.fullmatch(r"error: node 'out' on stream '[ab]': frames of "
                        r"streams '[ab]' and '[ab]' reach one output: put \{stream\} in 'path'",
                        result.stderr.strip())
    assert stream(ffprobe(tmp_path / "o.mp4"), "video") is not None  # what was written plays


def test_jsonl_sink_needs_an_input(tmp_path: Path) -> None:
    graph = tmp_path / "g.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "src": {"plugin": "testsrc", "duration": 0.1},
        "out": {"plugin": "null_sink", "input": "src"},
        "log": {"plugin": "jsonl_sink", "path": str(tmp_path / "e.jsonl")}}}))
    result = vidgraph("run", str(graph), "-q")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: node 'log': connect 'input' (frames), 'events' "
                                     "(SRC.events), or both")


def test_missing_capture_device_is_one_line(tmp_path: Path) -> None:
    result = vidgraph("run", "graphs/transcode.yaml", "-q", "--set", "src.url=/dev/video57",
                      "--set", "src.live=false", "--set", f"out.path={tmp_path / 'o.mp4'}")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: node 'src': no capture device '/dev/video57'"


def test_sources_option_needs_a_node_that_takes_it(tmp_path: Path) -> None:
    cams = tmp_path / "cams.yaml"
    cams.write_text("- {stream: a, url: x.mp4}\n")
    result = vidgraph("run", "graphs/demo.yaml", "--sources", str(cams))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: --sources: name the node, as --sources "
                                     f"NODE={cams} (candidates: none)")
