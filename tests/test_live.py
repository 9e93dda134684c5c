"""Live video against real servers on 127.0.0.1: a GStreamer RTSP camera that gets killed,
frozen and restarted, ffmpeg receiving what we publish, HLS, and the preview in Chromium."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.core import config
from pipeline.core.executor import Executor, RunResult
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry
from pipeline.kit.testing import run_graph

from .conftest import ROOT, RUN, ffprobe, spawn_run, stream
from .helpers import Record
from .live_servers import (
    Broker,
    Browser,
    Camera,
    Listener,
    Receiver,
    has_gstreamer,
    has_mosquitto,
    need,
    wait_for,
)

GSTREAMER = has_gstreamer()


class Running:
    """A graph running in this process on a thread (so tests can look at Record)."""

    def __init__(self, graph: dict[str, Any]) -> None:
        doc = config.loads(yaml.safe_dump(graph), "live.yaml")
        self.executor = Executor(build_graph(doc, Registry.from_entry_points(),
                                             allow_python=True))
        self.result: RunResult | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.executor.run()

    def stop(self, timeout: float = 10) -> RunResult:
        self.executor.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the graph did not stop"
        assert self.result is not None
        return self.result


def events(path: Path) -> list[dict[str, Any]]:
    """The event records written so far."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def event_names(path: Path) -> list[str]:
    return [e["event"] for e in events(path)]


def spawn(graph_file: Path, *args: str) -> subprocess.Popen[str]:
    """``vidgraph run GRAPH`` as a subprocess (signals go to it alone)."""
    return spawn_run(str(graph_file), *args)


def camera_graph(url: str, tmp_path: Path, **source: Any) -> Path:
    """camera -> MP4 (with sound) + frames jsonl + events jsonl, as a YAML file."""
    graph = {"nodes": {
        "cam": {"plugin": "video_source", "url": url, **source},
        "out": {"plugin": "video_sink", "input": "cam", "audio": "cam.audio",
                "path": str(tmp_path / "cam.mp4"), "preset": "ultrafast"},
        "frames": {"plugin": "jsonl_sink", "input": "cam", "path": str(tmp_path / "f.jsonl")},
        "log": {"plugin": "jsonl_sink", "events": "cam.events",
                "path": str(tmp_path / "events.jsonl")},
    }}
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


def frame_times(path: Path) -> list[float]:
    return [json.loads(line)["time"] for line in path.read_text().splitlines()]


def interrupt(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def record_camera(camera: Camera, tmp_path: Path,
                  read_timeout: float) -> tuple[subprocess.Popen[str], Path]:
    """Start recording ``camera`` (see camera_graph); returns once it is connected."""
    ev = tmp_path / "events.jsonl"
    proc = spawn(camera_graph(camera.url, tmp_path, read_timeout=read_timeout), "-q")
    wait_for(lambda: "connected" in event_names(ev), 15, "the first connection")
    return proc, ev


def test_camera_killed_and_restarted_reconnects_and_keeps_writing(cameras, tmp_path: Path):
    camera = cameras()
    proc, ev = record_camera(camera, tmp_path, read_timeout=2)
    time.sleep(1.5)
    camera.kill()
    wait_for(lambda: "disconnected" in event_names(ev), 10, "the disconnect")
    time.sleep(3)
    camera.start()  # the same port
    back = time.monotonic()
    wait_for(lambda: "reconnected" in event_names(ev), 20, "the reconnect")
    reconnect_s = time.monotonic() - back
    time.sleep(1.5)
    code, err = interrupt(proc)
    assert code == 130, err
    assert event_names(ev) == ["connected", "disconnected", "reconnected"]
    assert reconnect_s < 5  # backoff is at 0.5-2 s here
    assert err.count("disconnected") == 1 and err.count("reconnected after") == 1
    times = frame_times(tmp_path / "f.jsonl")
    assert all(b > a for a, b in itertools.pairwise(times)), "the timeline must not go back"
    gap = max(b - a for a, b in itertools.pairwise(times))
    assert gap > 2.5, "the time the camera was away shows as a gap"
    before = sum(1 for t in times if t < times[0] + 1.0)
    assert before >= 20 and len(times) - before >= 40
    info = ffprobe(tmp_path / "cam.mp4")
    video = stream(info, "video")
    assert video is not None and int(video["nb_read_frames"]) == len(times)
    assert stream(info, "audio") is not None


def test_frozen_camera_times_out_and_reconnects_after_sigcont(cameras, tmp_path: Path):
    camera = cameras()
    proc, ev = record_camera(camera, tmp_path, read_timeout=1)
    time.sleep(1)
    camera.freeze()
    frozen = time.time()
    wait_for(lambda: "disconnected" in event_names(ev), 10, "the read timeout")
    time.sleep(1)
    camera.thaw()
    wait_for(lambda: "reconnected" in event_names(ev), 20, "the reconnect")
    time.sleep(1)
    count = len(frame_times(tmp_path / "f.jsonl"))
    time.sleep(1)
    assert len(frame_times(tmp_path / "f.jsonl")) > count + 15, "frames flow again"
    code, err = interrupt(proc)
    assert code == 130, err
    down = next(e for e in events(ev) if e["event"] == "disconnected")
    assert down["reason"] == "no answer in 1 s"  # FFmpeg's own read timeout
    assert down["time"] - frozen < 1.5  # within read_timeout + 0.5 s


def test_watchdog_replaces_a_read_stuck_inside_ffmpeg(cameras, monkeypatch):
    """Where FFmpeg's timeout does not fire, the watchdog abandons the stuck thread."""
    import av

    from plugins.media import stream_reader

    def no_ffmpeg_timeout(url: str, opts: stream_reader.ReadOptions) -> Any:
        return av.open(url, options={"rtsp_transport": "tcp"}, timeout=(5, 60))

    monkeypatch.setattr(stream_reader, "open_container", no_ffmpeg_timeout)
    camera = cameras(audio=False)
    key = "watchdog"
    Record.seen.pop(key, None)
    running = Running({"nodes": {
        "cam": {"plugin": "video_source", "url": camera.url, "read_timeout": 1},
        "out": {"python": "tests.helpers:Arrivals", "input": "cam", "key": key},
        "log": {"python": "tests.helpers:EventLog", "events": "cam.events", "key": key + "_e"}}})
    wait_for(lambda: Record.seen.get(key), 15, "frames")
    camera.freeze()
    frozen = time.time()
    wait_for(lambda: len(Record.seen.get(key + "_e", [])) >= 2, 10, "the watchdog")
    camera.thaw()
    count = len(Record.seen[key])
    wait_for(lambda: len(Record.seen[key]) > count + 10, 15, "frames after the thaw")
    running.stop()
    names = [e["event"] for e in Record.seen[key + "_e"]]
    assert names[:3] == ["connected", "disconnected", "reconnected"]
    down = Record.seen[key + "_e"][1]
    assert down["reason"].startswith("no data for")
    assert 1.0 < down["time"] - frozen < 1.5  # within read_timeout + 0.5 s


def test_nobody_serving_retries_quietly_and_ctrl_c_exits_fast(tmp_path: Path):
    from .live_servers import free_port

    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/cam"
    ev = tmp_path / "events.jsonl"
    proc = spawn(camera_graph(url, tmp_path), "--stats", str(tmp_path / "stats.json"))
    wait_for(lambda: "connect_failed" in event_names(ev), 10, "the first failure")
    time.sleep(2.5)  # several retries (0.5, 1, 2 s)
    started = time.monotonic()
    code, err = interrupt(proc)
    assert time.monotonic() - started < 2
    assert code == 130
    warnings = [line for line in err.splitlines() if "retrying" in line]
    assert warnings == [f"vidgraph: node 'cam': stream 'cam': cannot open "
                        f"'rtsp://***@{url.split('@')[1]}': Connection refused; "
                        "retrying every 0.5 s to 10.0 s"]
    stats = (tmp_path / "stats.json").read_text()
    for text in (err, ev.read_text(), stats):
        assert "hunter2" not in text and "admin" not in text
    assert json.loads(stats)["nodes"]["cam"]["events"] == {"connect_failed": 1}


def test_a_server_that_accepts_and_never_answers_is_no_answer(tmp_path: Path):
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        url = f"rtsp://127.0.0.1:{silent.getsockname()[1]}/cam"
        result = run_graph({"nodes": {
            "cam": {"plugin": "video_source", "url": url, "open_timeout": 1, "max_retries": 0},
            "out": {"plugin": "null_sink", "input": "cam"}}})
    assert str(result.error) == (f"node 'cam': stream 'cam': gave up after no retry: cannot "
                                 f"open '{url}': no answer in 1 s")


def test_udp_transport_and_credentials_in_the_url(cameras):
    camera = cameras(audio=False)
    key = "udp"
    Record.seen.pop(key, None)
    url = camera.url.replace("rtsp://", "rtsp://viewer:pa55@")  # the server ignores them
    running = Running({"nodes": {
        "cam": {"plugin": "video_source", "url": url, "transport": "udp"},
        "out": {"python": "tests.helpers:Arrivals", "input": "cam", "key": key}}})
    wait_for(lambda: len(Record.seen.get(key, [])) >= 30, 15, "frames over UDP")
    result = running.stop()
    frames = [f for _, _, f in Record.seen[key]]
    assert (frames[0].width, frames[0].height) == (320, 240)
    assert result.metrics.nodes["cam"].events == {"connected": 1}


def test_four_cameras_share_a_batched_stage_and_one_dying_stalls_no_other(cameras):
    cams = [cameras(fps=25, audio=False) for _ in range(4)]
    key = "four"
    Record.seen.pop(key, None)
    running = Running({"nodes": {
        "cams": {"plugin": "video_source", "read_timeout": 1,
                 "sources": [{"stream": f"c{i}", "url": c.url} for i, c in enumerate(cams)]},
        "batch": {"python": "tests.helpers:BatchRecorder", "input": "cams", "key": key + "_b",
                  "batch_size": 4, "batch_timeout_ms": 20},
        "out": {"python": "tests.helpers:Arrivals", "input": "batch", "key": key}}})
    seen = lambda: Record.seen.get(key, [])  # noqa: E731
    wait_for(lambda: {s for s, _, _ in seen()} == {"c0", "c1", "c2", "c3"}, 15, "all cameras")
    time.sleep(1)
    cams[0].kill()
    killed = time.monotonic()
    time.sleep(4)
    result = running.stop()
    assert result.status == "interrupted"
    arrivals: dict[str, list[float]] = {}
    for name, at, _ in seen():
        arrivals.setdefault(name, []).append(at)
    for name in ("c1", "c2", "c3"):
        after = [t for t in arrivals[name] if t > killed]
        assert len(after) >= 70, f"{name} kept going"
        worst = max(b - a for a, b in itertools.pairwise([killed, *after]))
        assert worst < 0.5, f"{name} stalled for {worst:.2f} s after c0 died"
    assert not [t for t in arrivals["c0"] if t > killed + 0.5]
    assert max(Record.seen[key + "_b"]) > 1, "frames of several streams share batches"


@pytest.mark.parametrize("policy", ["drop_oldest", "block"])
def test_slow_stage_behind_a_live_camera(cameras, policy: str):
    camera = cameras(audio=False)
    key = f"slow_{policy}"
    Record.seen.pop(key, None)
    slow: dict[str, Any] = {"plugin": "identity", "input": "cam", "delay_ms": 50}
    if policy == "block":
        slow["policy"] = "block"
    running = Running({"nodes": {
        "cam": {"plugin": "video_source", "url": camera.url},
        "slow": slow,
        "out": {"python": "tests.helpers:Arrivals", "input": "slow", "key": key}}})
    wait_for(lambda: Record.seen.get(key), 15, "frames")
    time.sleep(6)
    result = running.stop()
    latency = [at - frame.captured for _, at, frame in Record.seen[key]]
    drops = result.metrics.nodes["slow"].snapshot()["drops"]
    if policy == "drop_oldest":
        assert max(latency[10:]) < 0.4
        assert drops > 50  # a third of the frames go
    else:
        assert drops == 0
        assert latency[-1] > latency[10] + 1.0, "latency grows when nothing may drop"


def test_cameras_graph_follows_its_sources_file(cameras, tmp_path: Path, monkeypatch):
    """graphs/cameras.yaml with --sources: cameras are added and removed while it runs; their
    events reach the MQTT broker named by $MQTT_URL."""
    need("Debian's mosquitto", has_mosquitto())
    broker = Broker(tmp_path).start()
    listener = Listener(broker)
    monkeypatch.setenv("MQTT_URL", f"mqtt://127.0.0.1:{broker.port}")
    a, b = cameras(), cameras(audio=False)
    sources = tmp_path / "cams.yaml"
    sources.write_text(yaml.safe_dump([{"stream": "a", "url": a.url}]))
    ev = tmp_path / "events.jsonl"
    proc = spawn(ROOT / "graphs" / "cameras.yaml", "--sources", str(sources), "-q",
                 "--set", f"rec.path={tmp_path}/{{stream}}.mp4", "--set", "view.port=0",
                 "--set", f"log.path={ev}", "--metrics", "0",
                 "--set", f"clips.path={tmp_path}/clips/{{stream}}-{{start}}.mp4",
                 "--set", f"clip_log.path={tmp_path}/clips.jsonl")

    def frames(name: str) -> int:
        try:  # fragmented: readable while being written, once its first fragment is out
            video = stream(ffprobe(tmp_path / f"{name}.mp4"), "video")
        except subprocess.CalledProcessError:
            return 0
        return int(video.get("nb_read_frames", 0)) if video else 0

    def connected() -> list[str]:
        return [e["stream"] for e in events(ev) if e["event"] == "connected"]

    try:
        wait_for(lambda: connected() == ["a"], 15, "camera a")
        sources.write_text(yaml.safe_dump([{"stream": "a", "url": a.url},
                                           {"stream": "b", "url": b.url}]))
        wait_for(lambda: connected() == ["a", "b"], 15, "camera b to be added")
        wait_for(lambda: frames("b"), 20, "camera b's first fragment")
    except AssertionError as exc:  # say what the graph said
        _, err = interrupt(proc)
        raise AssertionError(f"{exc}; the graph said: {err}") from None
    sources.write_text(yaml.safe_dump([{"stream": "b", "url": b.url}]))
    time.sleep(1.5)
    count_a, count_b = frames("a"), frames("b")
    time.sleep(1.5)
    assert frames("a") == count_a, "camera a was removed"
    assert frames("b") > count_b + 20, "camera b goes on"
    code, err = interrupt(proc)
    listener.stop()
    broker.kill()
    assert code == 130, err
    assert "adding stream 'b'" in err and "removing stream 'a'" in err
    for name in ("a", "b"):
        published = [json.loads(p) for p in listener.on(f"vidgraph/cameras/{name}/events")]
        assert published[0]["event"] == "connected" and published[0]["stream"] == name
    assert listener.on("vidgraph/cameras/status") == ["online", "offline"]
    assert stream(ffprobe(tmp_path / "a.mp4"), "audio") is not None
    assert stream(ffprobe(tmp_path / "b.mp4"), "audio") is None  # b has no microphone


def test_rtsp_output_reaches_ffmpeg_with_every_frame(tmp_path: Path):
    receiver = Receiver(tmp_path / "received.mkv")
    try:
        result = subprocess.run(
            [*RUN, "run", "graphs/demo.yaml", "-q", "--set", "src.duration=2",
             "--set", f"out.path={receiver.url}", "--set", f"log.path={tmp_path / 'd.jsonl'}",
             "--set", f"painted.path={tmp_path / 'painted.mp4'}", "--set", "paint.max_side=32"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        receiver.wait(15)
    finally:
        receiver.kill()
    video = stream(ffprobe(tmp_path / "received.mkv"), "video")
    assert video is not None and video["codec_name"] == "h264"
    assert int(video["nb_read_frames"]) == 60
    assert (video["width"], video["height"]) == (640, 360)


def test_rtsp_output_publishes_again_when_the_receiver_comes_back(tmp_path: Path):
    first = Receiver(tmp_path / "first.mkv")
    graph = tmp_path / "publish.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "src": {"plugin": "testsrc", "width": 320, "height": 240, "duration": 0,
                "realtime": True},
        "out": {"plugin": "video_sink", "input": "src", "path": first.url,
                "reconnect_delay": 0.2, "reconnect_max_delay": 0.5}}}))
    proc = spawn(graph, "-q")
    second = None
    try:
        # waits, not sleeps: on a busy machine the graph takes seconds just to start
        wait_for(first.received, 30, "the first receiver's pictures")
        time.sleep(1)
        first.kill()  # the server goes away mid-stream
        time.sleep(1)
        second = Receiver(tmp_path / "second.mkv", port=first.port)
        wait_for(second.received, 30, "the second receiver's pictures")
        time.sleep(2)
        code, err = interrupt(proc)
        second.wait(15)
    finally:
        for receiver in (first, second):
            if receiver is not None:
                receiver.kill()
    assert code == 130, err
    assert "lost the connection to rtsp://127.0.0.1" in err
    assert "publishing to rtsp://127.0.0.1" in err and "again" in err
    video = stream(ffprobe(tmp_path / "second.mkv"), "video")
    assert video is not None and int(video["nb_read_frames"]) >= 45  # ~2-3 s at 30 fps


def test_hls_output_plays_in_ffprobe(tmp_path: Path, long_clip: Path):
    result = subprocess.run(
        [*RUN, "run", "graphs/transcode.yaml", "-q", "--set", f"src.url={long_clip}",
         "--set", "src.max_frames=90", "--set", "out.segment_s=1",
         "--set", f"out.path={tmp_path / 'hls' / 'live.m3u8'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    playlist = (tmp_path / "hls" / "live.m3u8").read_text()
    assert playlist.startswith("#EXTM3U") and "#EXT-X-ENDLIST" in playlist
    assert playlist.count(".ts") >= 3
    info = ffprobe(tmp_path / "hls" / "live.m3u8")
    video = stream(info, "video")
    assert video is not None and int(video["nb_read_frames"]) == 90
    assert float(info["format"]["duration"]) == pytest.approx(3.0, abs=0.2)
    assert stream(info, "audio") is not None


def test_preview_page_shows_a_moving_picture_and_figures(tmp_path: Path):
    import shutil

    need("Chromium", shutil.which("chromium") is not None)
    proc, url = spawn_preview(tmp_path, fps=15)
    assert url.startswith("http://127.0.0.1:")
    browser = Browser(url, tmp_path / "profile")
    try:
        sample = """new Promise(done => {
            const img = document.querySelector('img');
            if (!img || !img.naturalWidth) { done(null); return; }
            const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data;
            let h = 0; for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
            done([c.width, c.height, h]);
        })"""
        first = wait_for(lambda: browser.evaluate(sample), 15, "the picture")
        assert first[:2] == [320, 180]
        time.sleep(0.5)
        second = browser.evaluate(sample)
        assert second[2] != first[2], "the picture must move"
        table = wait_for(lambda: browser.evaluate(
            "document.querySelector('#nodes tbody').innerText"), 5, "the figures")
        assert "src" in table and "view" in table
        time.sleep(1.2)
        fps = browser.evaluate("[...document.querySelectorAll('#nodes tr[data-node=src] td')]"
                               ".map(td => td.innerText)[1]")
        assert 20 < float(fps) < 40  # testsrc runs at 30 fps
    finally:
        browser.close()
        code, err = interrupt(proc)
    assert code == 130, err


def test_http_mjpeg_from_a_preview_is_a_live_input(tmp_path: Path):
    """video_source reads the preview's MJPEG stream over HTTP (a camera of that kind)."""
    upstream = spawn_preview(tmp_path)
    try:
        url = upstream[1] + "video/src.mjpg"
        key = "mjpeg"
        Record.seen.pop(key, None)
        running = Running({"nodes": {
            "cam": {"plugin": "video_source", "url": url},
            "out": {"python": "tests.helpers:Arrivals", "input": "cam", "key": key}}})
        wait_for(lambda: len(Record.seen.get(key, [])) >= 20, 15, "MJPEG frames")
        running.stop()
    finally:
        interrupt(upstream[0])
    frames = [f for _, _, f in Record.seen[key]]
    assert (frames[0].width, frames[0].height) == (320, 180)
    assert all(b.pts > a.pts for a, b in itertools.pairwise(frames))


def spawn_preview(tmp_path: Path, fps: float = 30) -> tuple[subprocess.Popen[str], str]:
    """A running graph whose preview serves a test pattern; returns (process, page URL)."""
    graph = tmp_path / "upstream.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "src": {"plugin": "testsrc", "width": 320, "height": 180, "duration": 0,
                "realtime": True},
        "view": {"plugin": "preview", "input": "src", "port": 0, "fps": fps}}}))
    proc = spawn(graph, "-q")
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "preview on " in line, line
    return proc, line.split("preview on ")[1].strip()

