"""Cameras added and removed while a graph runs: every removed camera's recording is
finalised (playable), and the graph returns to the threads, files, per-stream state and
memory it had with the same cameras before."""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.core import config
from pipeline.core.executor import Executor, RunResult, RunStatus
from pipeline.core.graph import build_graph
from pipeline.core.registry import Registry

from .conftest import ffprobe, stream
from .live_servers import Camera, has_gstreamer, need

CYCLES = 100  # cameras added, and as many removed


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def open_files() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0,
             state: Callable[[], object] = lambda: None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {state()}")
        time.sleep(0.02)


def describe(executor: Executor) -> str:
    """What the recorder and the source hold, for a failure message."""
    rec = executor.nodes["rec"].instances[0]
    cams = executor.nodes["cams"].instances[0]
    streams = {name: (s.video, s.video_open, s.audio, s.audio_open,
                      s.target is not None and s.target.output is not None, len(s.ahead))
               for name, s in dict(getattr(rec, "streams", {})).items()}
    readers = {name: (r.ended, r.thread is not None and r.thread.is_alive(), r.index)
               for name, r in dict(getattr(cams, "readers", {})).items()}
    stacks = {t.name: "".join(traceback.format_stack(sys._current_frames()[t.ident], limit=4))
              for t in threading.enumerate() if t.name.startswith("node:") and t.ident}
    return (f"sink {streams}, readers {readers}, "
            f"inputs {executor.metrics.nodes['rec'].snapshot()['inputs']}\n" +
            "\n".join(f"{k}:\n{v}" for k, v in stacks.items()) +
            str({n: (m.frames_in, m.frames_out) for n, m in executor.metrics.nodes.items()}) +
            str({n: [(type(i).__name__, getattr(i, "stream", None)) for e in m.edges
                     for _, i in list(e.items)] for n, m in executor.metrics.nodes.items()}))


@pytest.mark.slow
def test_cameras_added_and_removed_a_hundred_times_leave_nothing_behind(tmp_path: Path) -> None:
    need("GStreamer's RTSP server", has_gstreamer())
    cameras = {f"cam{i}": Camera(fps=15, gop=4, size=(160, 120), path=f"/cam{i}").start()
               for i in range(4)}
    sources = tmp_path / "cams.yaml"
    out = tmp_path / "rec"

    def use(names: list[str]) -> None:
        sources.write_text("".join(f"- {{stream: {n}, url: '{cameras[n].url}'}}\n"
                                   for n in names))

    use(["cam0", "cam1"])
    # The recording is of processed frames, which this machine cannot make as fast as the
    # cameras send them: the first edge drops (else its backlog would delay every stream
    # marker by seconds); this test is about streams coming and going.
    doc = config.loads(f"""nodes:
  cams: {{plugin: video_source, sources_file: '{sources}'}}
  faces: {{plugin: mtcnn, input: cams, every: 2, max_side: 160, policy: drop_oldest}}
  clean: {{plugin: temporal_denoise, input: faces, frames: 2, queue_size: 2}}
  rec: {{plugin: video_sink, input: clean, audio: cams.audio, path: '{out}/{{stream}}.mp4',
         preset: ultrafast, queue_size: 2}}
""")
    executor = Executor(build_graph(doc, Registry.from_entry_points()))
    results: list[RunResult] = []
    runner = threading.Thread(target=lambda: results.append(executor.run()))
    rec = executor.nodes["rec"].instances[0]

    def followed() -> dict:
        return dict(getattr(rec, "streams", {}))  # set by open(), on the runner's thread

    def settled(names: list[str]) -> bool:
        """Exactly these cameras are followed, each with its output open (frames came)."""
        states = followed()
        return sorted(states) == sorted(names) and all(
            s.target is not None and s.target.output is not None for s in states.values())

    try:
        runner.start()
        wait_for(lambda: settled(["cam0", "cam1"]), "the first two cameras")
        time.sleep(1.0)  # models loaded, buffers at their working size
        before = (threading.active_count(), open_files(), executor.streams_held(), rss_mb())
        active, spare = ["cam0", "cam1"], ["cam2", "cam3"]
        for cycle in range(CYCLES // 2):
            # both cameras out and the other two in, in one edit of the file: two
            # additions and two removals a cycle, ends and starts at once
            active, spare = spare, active
            use(active)
            wait_for(lambda names=list(active): settled(names), f"cycle {cycle}",
                     state=lambda: describe(executor))
        use(["cam0", "cam1"])
        wait_for(lambda: settled(["cam0", "cam1"]), "the first two cameras again")
        time.sleep(1.0)
        threads, files = threading.active_count(), open_files()
        deadline = time.monotonic() + 10  # readers of removed cameras end at their next read
        while (threads, files) != before[:2] and time.monotonic() < deadline:
            time.sleep(0.1)
            threads, files = threading.active_count(), open_files()
        after = (threads, files, executor.streams_held(), rss_mb())
    finally:
        executor.stop()
        runner.join(30)
        for camera in cameras.values():
            camera.stop()
    print(f"\n{CYCLES} cameras out and in: threads {before[0]} -> {after[0]}, open files "
          f"{before[1]} -> {after[1]}, per-stream state {before[2]} -> {after[2]}, "
          f"RSS {before[3]:.1f} -> {after[3]:.1f} MB")
    assert results and results[0].status is RunStatus.INTERRUPTED, results
    assert after[:3] == before[:3]
    assert after[3] - before[3] < 50
    recordings = sorted(out.glob("*.mp4"))
    assert len(recordings) == CYCLES + 2, [p.name for p in recordings]  # one file a session
    for path in recordings:
        info = ffprobe(path)
        assert int(stream(info, "video")["nb_read_frames"]) > 0, path
        assert stream(info, "audio") is not None, path
