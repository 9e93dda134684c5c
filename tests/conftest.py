"""Shared fixtures: real clips made with PyAV, ffprobe, and the CLI as a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from plugins.media.clips import make_clip

from .live_servers import Camera, has_gstreamer, need

ROOT = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(ROOT / "run.py")]


def ffprobe(path: str | Path) -> dict:
    """ffprobe's view of a file: streams (with counted video frames) and format."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format",
         "-of", "json", str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def stream(info: dict, kind: str) -> dict | None:
    """The first stream of ``kind`` (video, audio) in ffprobe output."""
    return next((s for s in info["streams"] if s["codec_type"] == kind), None)


def vidgraph(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI (``python run.py ARGS``) from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*RUN, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, **kwargs)


_spawned: list[subprocess.Popen[str]] = []


def spawn_run(*args: str, env: dict[str, str] | None = None,
              stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """``vidgraph run ARGS`` in the background: see :func:`spawn_vidgraph`."""
    return spawn_vidgraph("run", *args, env=env, stderr=stderr)


def spawn_vidgraph(*args: str, env: dict[str, str] | None = None,
                   stderr: int = subprocess.PIPE) -> subprocess.Popen[str]:
    """``vidgraph ARGS`` in the background, from the repository root, with text pipes
    for its output. Ctrl+C (``send_signal(SIGINT)``) reaches it alone; whatever it or its
    children still run when the test ends is killed then (see ``no_process_outlives_its_test``)."""
    # its own process group, for that kill, but not its own session: with the kernel's
    # autogroup scheduling a session is a group that gets an equal share of the CPU, which
    # would change what "a busy machine" means to the tests that make one
    proc = subprocess.Popen([*RUN, *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=stderr, process_group=0,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    _spawned.append(proc)
    return proc


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    """Kill the process group of every graph a test left running. A test that fails while
    one runs (a timeout waiting for it, say) would otherwise leave a realtime encoder
    behind, and on a 2-core machine each one left makes the next tests slower, until they
    all time out."""
    yield
    while _spawned:
        proc = _spawned.pop()
        with contextlib.suppress(ProcessLookupError):  # it, and all it started, had ended
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s, 320x240, 30 fps H.264 + AAC stereo 48 kHz."""
    return make_clip(tmp_path_factory.mktemp("media") / "clip.mp4", seconds=2.0)


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s, 320x240, 30 fps H.264 + AAC."""
    return make_clip(tmp_path_factory.mktemp("media") / "long.mp4", seconds=10.0)


@pytest.fixture(scope="session")
def person_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of ``testsrc``'s panned face (made with graphs/demo.yaml, its overlay grey and
    without scores or landmarks, so a detector finds the face and nothing else); what
    demo.yaml found is beside it, as ``person.jsonl``."""
    path = tmp_path_factory.mktemp("person") / "person.mp4"
    made = vidgraph("run", "graphs/demo.yaml", "-q", "--set", "src.duration=2",
                    "--set", f"out.path={path}",
                    "--set", f"log.path={path.with_suffix('.jsonl')}",
                    # the painted branch is not used: small and out of the way
                    "--set", "paint.max_side=32",
                    "--set", f"painted.path={path.with_name('painted.mp4')}",
                    "--set", "view.landmarks=false", "--set", "view.scores=false",
                    "--set", "view.color=[128,128,128]")
    assert made.returncode == 0, made.stderr
    return path


@pytest.fixture
def cameras() -> Iterator[Callable[..., Camera]]:
    """Start RTSP cameras on demand (skipped without GStreamer); all are stopped at the end."""
    need("GStreamer's RTSP server", has_gstreamer())
    started: list[Camera] = []

    def start(**kwargs: Any) -> Camera:
        camera = Camera(**kwargs).start()
        started.append(camera)
        return camera

    yield start
    for camera in started:
        camera.stop()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
