"""One source feeding several sinks: nobody changes what it received, so every output gets
all the frames and the sound, unshifted; audio packets survive pickling."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from pipeline.core.executor import RunStatus
from pipeline.kit.testing import run_graph
from plugins.media.clips import make_clip

from .conftest import ffprobe, stream
from .live_servers import Camera, has_gstreamer, need


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    """(time in seconds, bytes) of every audio packet of a file."""
    with av.open(str(path)) as container:
        return [(float(p.pts * p.time_base), bytes(p))
                for p in container.demux(audio=0) if p.size and p.pts is not None]


def three_branch_graph(url: str, out: Path, **source: object) -> dict:
    """Two sinks on the source's video and audio (different quality), a third through a
    stage that reads the pixels; lossless edges everywhere."""
    sink = {"audio": "src.audio", "preset": "ultrafast", "policy": "block"}
    return {"nodes": {
        "src": {"plugin": "video_source", "url": url, **source},
        "a": {"plugin": "video_sink", "input": "src", "path": str(out / "a.mp4"), "crf": 20,
              **sink},
        "b": {"plugin": "video_sink", "input": "src", "path": str(out / "b.mp4"), "crf": 40,
              **sink},
        "noisy": {"plugin": "add_noise", "input": "src", "sigma": 3, "policy": "block"},
        "c": {"plugin": "video_sink", "input": "noisy", "path": str(out / "c.mp4"), **sink}}}


def check_outputs(out: Path, frames: int, duration: float, sound: list[tuple[float, bytes]],
                  sound_starts: float = 0.0, jitter_s: float = 0.0) -> None:
    """Every output has the frames, the duration and the sound (the same packets, from
    ``sound_starts`` seconds on, to the end of the video). The sound is cut where the
    source's last picture ends, which a live camera's timestamps move by ``jitter_s``."""
    for name in ("a", "b", "c"):
        info = ffprobe(out / f"{name}.mp4")
        video, audio = stream(info, "video"), stream(info, "audio")
        assert int(video["nb_read_frames"]) == frames, name
        assert float(info["format"]["duration"]) == pytest.approx(duration, abs=0.05), name
        assert audio is not None, name
        frame_s = 1024 / int(audio["sample_rate"])  # one AAC frame
        assert float(audio["duration"]) == pytest.approx(duration - sound_starts,
                                                         abs=frame_s + 1e-3 + jitter_s), name
        got = audio_packets(out / f"{name}.mp4")
        assert [data for _, data in got] == [data for _, data in sound], name
        assert got[0][0] == pytest.approx(sound_starts, abs=frame_s), name


@pytest.mark.parametrize("start", [0.0, 1.0])
def test_two_sinks_and_a_stage_share_one_file_source(tmp_path: Path, start: float) -> None:
    clip = make_clip(tmp_path / "in.mp4", seconds=3.0)
    result = run_graph(three_branch_graph(str(clip), tmp_path, start=start))
    assert result.status is RunStatus.OK, result.error
    source = audio_packets(clip)
    frame_s = 1024 / 48000
    # the input's own packets from the one that sounds at `start` on (from the start: all
    # of them, the encoder's priming packet before 0 s too)
    expected = [(t, data) for t, data in source if not start or t + frame_s > start + 1e-6]
    check_outputs(tmp_path, round((3.0 - start) * 30), 3.0 - start, expected)


def test_two_sinks_and_a_stage_share_one_live_camera(tmp_path: Path) -> None:
    need("GStreamer's RTSP server", has_gstreamer())
    camera = Camera(fps=30).start()
    try:
        result = run_graph(three_branch_graph(camera.url, tmp_path, max_frames=60))
    finally:
        camera.stop()
    assert result.status is RunStatus.OK, result.error
    sound = audio_packets(tmp_path / "a.mp4")
    assert len(sound) > 60  # about two seconds of 48 kHz AAC
    # the camera's sound may start a little after its first picture; it runs to the end
    assert sound[0][0] < 0.15
    check_outputs(tmp_path, 60, 2.0, sound, sound_starts=max(0.0, sound[0][0]), jitter_s=0.005)


def test_audio_packets_round_tripped_through_pickle_are_written_unchanged(
        tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    result = run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip)},
        "wire": {"python": "tests.helpers:PickleAudio", "audio": "src.audio"},
        "out": {"plugin": "video_sink", "input": "src", "audio": "wire.audio",
                "path": str(out), "preset": "ultrafast"}}})
    assert result.status is RunStatus.OK, result.error
    assert audio_packets(out) == audio_packets(clip)
    assert int(stream(ffprobe(out), "video")["nb_read_frames"]) == 60
