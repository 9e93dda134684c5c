"""Camera recordings lose nothing: four loopback cameras recorded by copying their packets
for a minute, on a machine kept busy, hold every frame the cameras sent, while an analysis
branch on the same cameras drops what it cannot keep up with.

What a camera sent is witnessed by a second client, Debian's ffmpeg copying the same
stream: both get the same encoded pictures, so a recording's pictures are found among the
witness's by their bytes, and every picture the witness got between a recording's first
and last is one the recording should hold."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest
import yaml

from pipeline.core import config
from pipeline.core.executor import Executor
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry

from .conftest import ffprobe, spawn_run, stream
from .live_servers import Camera, has_gstreamer, need

SECONDS = 60
FPS = 30


def pictures(path: Path) -> list[str]:
    """The hash of every compressed picture in a file, in order."""
    with av.open(str(path)) as container:
        return [hashlib.sha1(bytes(p)).hexdigest() for p in container.demux(video=0) if p.size]


def span(path: Path) -> float:
    """Seconds from a file's first picture to its last."""
    with av.open(str(path)) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(video=0)
                 if p.size and p.pts is not None]
    return max(times) - min(times)


@pytest.mark.slow
def test_four_cameras_recorded_by_copy_keep_every_frame_on_a_busy_machine(
        tmp_path: Path) -> None:
    need("GStreamer's RTSP server", has_gstreamer())
    cameras = [Camera(fps=FPS, gop=FPS, path=f"/cam{i}").start() for i in range(4)]
    out = tmp_path / "rec"
    graph = tmp_path / "record.yaml"
    graph.write_text(yaml.safe_dump({"nodes": {
        "cams": {"plugin": "video_source",
                 "sources": [{"stream": f"cam{i}", "url": c.url}
                             for i, c in enumerate(cameras)]},
        # analysis: as fast as it can, the newest picture first (it drops, and may)
        "faces": {"plugin": "mtcnn", "input": "cams", "batch_size": 4},
        "seen": {"plugin": "null_sink", "input": "faces"},
        # the recordings: the cameras' packets and sound, copied
        "rec": {"plugin": "video_sink", "packets": "cams.packets", "audio": "cams.audio",
                "path": f"{out}/{{stream}}.mp4"}}}))
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    witnesses = [subprocess.Popen(
        ["ffmpeg", "-v", "error", "-rtsp_transport", "tcp", "-i", camera.url, "-c", "copy",
         "-an", "-y", str(tmp_path / f"witness{i}.mkv")], stdin=subprocess.DEVNULL)
        for i, camera in enumerate(cameras)]
    stats = tmp_path / "stats.json"
    try:
        proc = spawn_run(str(graph), "-q", "--stats", str(stats))
        time.sleep(SECONDS)
        proc.send_signal(signal.SIGINT)  # Ctrl+C: sources stop, everything drains, files finalised
        _, err = proc.communicate(timeout=60)
        for witness in witnesses:
            # ffmpeg finishes its file on Ctrl+C too, and unlike its "q" key, the signal
            # also ends a read that waits on a camera starved by the busy machine
            witness.send_signal(signal.SIGINT)
        for witness in witnesses:
            witness.wait(timeout=30)
    finally:
        for process in (*hogs, *witnesses):
            process.kill()
        for camera in cameras:
            camera.stop()
    assert proc.returncode == 130, err
    figures = json.loads(stats.read_text())["nodes"]
    assert figures["faces"]["drops"] > 0  # the machine was too busy for every analysis
    for edge in figures["rec"]["inputs"].values():
        assert edge["dropped"] == 0, edge
    for i in range(4):
        path = out / f"cam{i}.mp4"
        ours, sent = pictures(path), pictures(tmp_path / f"witness{i}.mkv")
        where = {digest: n for n, digest in enumerate(sent)}
        found = [where[digest] for digest in ours if digest in where]
        assert len(found) == len(ours)  # every recorded picture is one the camera sent
        expected = found[-1] - found[0] + 1  # what it sent from our first to our last
        print(f"\ncam{i}: {len(ours)} of the {expected} pictures the camera sent meanwhile")
        assert len(ours) >= 0.99 * expected, (path, len(ours), expected)
        seconds = span(path)
        assert seconds > SECONDS - 10 and len(ours) > (SECONDS - 10) * FPS * 0.9
        info = ffprobe(path)
        assert int(stream(info, "video")["nb_read_frames"]) == len(ours)
        assert float(stream(info, "audio")["duration"]) == pytest.approx(seconds, abs=0.5)
        decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-fps_mode",
                                  "passthrough", "-f", "null", "-"],
                                 capture_output=True, text=True)
        # every picture and sound decodes (ffmpeg's own null output may still remark on
        # the camera's jittery sound timestamps it rounds to milliseconds)
        complaints = [line for line in decoded.stderr.splitlines()
                      if "non monotonically increasing dts to muxer" not in line]
        assert decoded.returncode == 0 and not complaints, complaints[:5]


def test_a_slow_reencoded_recording_keeps_a_backlog_and_holds_no_one_back(
        tmp_path: Path) -> None:
    """Pictures at 20 fps through a stage that manages 12 on their way to a recording: the
    recording gets every one (the edge from the camera keeps a counted backlog), and a
    branch beside it gets them as they come, never held back."""
    out = tmp_path / "slow.mp4"
    doc = config.loads(json.dumps({"nodes": {
        "cam": {"python": "tests.helpers:Noise", "fps": 20},
        "slow": {"plugin": "identity", "input": "cam", "delay_ms": 80},
        "rec": {"plugin": "video_sink", "input": "slow", "path": str(out),
                "preset": "ultrafast"},
        "side": {"python": "tests.helpers:Arrivals", "input": "cam", "key": "side"}}}))
    executor = Executor(build_graph(doc, Registry.from_entry_points(), allow_python=True))
    stopper = threading.Timer(3.0, executor.stop)
    stopper.start()
    result = executor.run()
    sent = result.metrics.nodes["cam"].frames_out
    edge = result.metrics.nodes["slow"].snapshot()["inputs"]["cam.out -> slow.in"]
    assert edge["policy"] == "backlog" and edge["dropped"] == 0
    assert edge["max_depth"] >= 10  # the backlog grew while the stage fell behind
    assert int(stream(ffprobe(out), "video")["nb_read_frames"]) == sent
    side = result.metrics.nodes["side"]
    assert side.frames_in == sent
    assert max(side.latencies) < 0.5  # the branch beside it was never held back
