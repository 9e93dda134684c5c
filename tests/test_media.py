"""Sources and sinks on real media: transcodes checked by ffprobe, bad input, Ctrl+C."""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.core.executor import RunStatus
from pipeline.kit.testing import run_graph

from .conftest import ffprobe, spawn_run, stream, vidgraph


def transcode(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    return vidgraph("run", "graphs/transcode.yaml", "--set", f"src.url={src}",
                    "--set", f"out.path={dst}", *extra)


def test_transcode_keeps_frames_size_duration_and_audio(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = transcode(clip, out)
    assert result.returncode == 0, result.stderr
    assert "60 frames/60 (100%)" in result.stderr  # the progress line
    before, after = ffprobe(clip), ffprobe(out)
    v_in, v_out = stream(before, "video"), stream(after, "video")
    assert v_out["codec_name"] == "h264" and v_out["pix_fmt"] == "yuv420p"
    assert (v_out["width"], v_out["height"]) == (v_in["width"], v_in["height"]) == (320, 240)
    assert int(v_out["nb_read_frames"]) == int(v_in["nb_read_frames"]) == 60
    assert v_out["avg_frame_rate"] == "30/1"
    assert float(after["format"]["duration"]) == pytest.approx(2.0, abs=0.05)
    a_in, a_out = stream(before, "audio"), stream(after, "audio")
    assert a_out is not None
    for field in ("codec_name", "sample_rate", "channels", "nb_frames"):
        assert a_out[field] == a_in[field], field  # copied, not re-encoded
    assert float(a_out["duration"]) == pytest.approx(float(a_in["duration"]), abs=0.03)


def test_quiet_prints_nothing(clip: Path, tmp_path: Path) -> None:
    result = transcode(clip, tmp_path / "q.mp4", "--quiet")
    assert result.returncode == 0
    assert result.stderr == "" and result.stdout == ""


@pytest.mark.parametrize(("codec", "name", "ext"), [
    ("libx265", "hevc", "mp4"), ("libsvtav1", "av1", "mkv"), ("mpeg4", "mpeg4", "mp4")])
def test_other_encoders(clip: Path, tmp_path: Path, codec: str, name: str, ext: str) -> None:
    out = tmp_path / f"out.{ext}"
    result = transcode(clip, out, "--set", f"out.codec={codec}", "--set", "out.crf=35",
                       "--set", "out.preset=" + ("12" if codec == "libsvtav1" else "ultrafast"),
                       *(["--set", "out.crf=null", "--set", "out.preset=null",
                          "--set", "out.bitrate=500k"] if codec == "mpeg4" else []))
    assert result.returncode == 0, result.stderr
    info = ffprobe(out)
    assert stream(info, "video")["codec_name"] == name
    assert int(stream(info, "video")["nb_read_frames"]) == 60
    assert stream(info, "audio") is not None


def test_fragmented_mp4_is_playable(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "frag.mp4"
    assert transcode(clip, out, "--set", "out.fragmented=true").returncode == 0
    assert b"moof" in out.read_bytes()[:200_000]
    assert int(stream(ffprobe(out), "video")["nb_read_frames"]) == 60


def test_start_and_max_frames_cut_the_clip(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "cut.mp4"
    result = transcode(clip, out, "--set", "src.start=0.5", "--set", "src.max_frames=20")
    assert result.returncode == 0, result.stderr
    info = ffprobe(out)
    assert int(stream(info, "video")["nb_read_frames"]) == 20
    assert float(stream(info, "video")["start_time"]) == pytest.approx(0.0, abs=0.01)


def test_loop_keeps_pts_increasing(clip: Path) -> None:
    from .helpers import Record

    run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip), "loop": True, "max_frames": 150},
        "out": {"python": "tests.helpers:Record", "input": "src", "key": "loop"}}})
    times = [f.time for f in Record.seen["loop"]]
    assert len(times) == 150
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx(149 / 30, abs=0.05)


def test_missing_input_file_is_one_line_exit_1(tmp_path: Path) -> None:
    result = transcode(tmp_path / "nope.mp4", tmp_path / "o.mp4")
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: node 'src': No such file or directory "
                                     f"'{tmp_path / 'nope.mp4'}'")


def test_not_a_video_is_one_line_exit_1(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(random.Random(7).randbytes(20_000))
    result = transcode(junk, tmp_path / "o.mp4")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    # FFmpeg either fails to probe noise or takes it for some audio format: both name it
    assert len(lines) == 1
    assert (lines[0].startswith(f"error: node 'src': cannot open '{junk}'")
            or lines[0] == f"error: node 'src': '{junk}' has no video stream")


def test_unknown_codec_is_one_line_exit_1(clip: Path, tmp_path: Path) -> None:
    result = transcode(clip, tmp_path / "o.mp4", "--set", "out.codec=libx999")
    assert result.returncode == 1
    assert result.stderr.startswith("error: node 'out': unknown encoder 'libx999' (available")
    assert len(result.stderr.strip().splitlines()) == 1


def test_unwritable_output_folder_is_one_line_exit_1(clip: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = transcode(clip, blocker / "sub" / "o.mp4")
    assert result.returncode == 1
    assert result.stderr.startswith("error: node 'out': ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = vidgraph("--debug", "run", "graphs/transcode.yaml", "--set",
                      f"src.url={tmp_path / 'x.mp4'}")
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_truncated_file_keeps_what_decodes(long_clip: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(long_clip), "-c", "copy", str(cut)],
                   check=True)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "o.mp4"
    result = transcode(cut, out, "--quiet")
    assert result.returncode == 0, result.stderr
    frames = int(stream(ffprobe(out), "video")["nb_read_frames"])
    assert 60 < frames < 300


def test_corrupt_data_is_skipped_and_output_playable(long_clip: Path, tmp_path: Path) -> None:
    ts = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(long_clip), "-c", "copy", str(ts)],
                   check=True)
    data = bytearray(ts.read_bytes())
    rng = np.random.default_rng(1)
    for start in rng.integers(len(data) // 4, 3 * len(data) // 4, size=6):
        data[start:start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    ts.write_bytes(bytes(data))
    out = tmp_path / "o.mp4"
    result = transcode(ts, out, "--quiet")
    assert result.returncode == 0, result.stderr
    frames = int(stream(ffprobe(out), "video")["nb_read_frames"])
    assert 200 < frames <= 300


def interrupted_run(graph: Path, signals: int, tmp_path: Path) -> subprocess.CompletedProcess:
    proc = spawn_run(str(graph))
    out = tmp_path / "live.mp4"
    deadline = time.monotonic() + 30
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def paced_graph(tmp_path: Path, clip: Path, delay_ms: float = 0) -> Path:
    graph = tmp_path / "paced.yaml"
    graph.write_text(f"""
nodes:
  src: {{plugin: video_source, url: "{clip}"}}
  pace: {{plugin: rate_limit, input: src, realtime: true}}
  slow: {{plugin: identity, input: pace, delay_ms: {delay_ms}}}
  out: {{plugin: video_sink, input: slow, audio: src.audio, path: "{tmp_path / 'live.mp4'}",
         preset: ultrafast}}
""")
    return graph


def test_ctrl_c_mid_transcode_leaves_a_playable_mp4(long_clip: Path, tmp_path: Path) -> None:
    result = interrupted_run(paced_graph(tmp_path, long_clip), 1, tmp_path)
    assert result.returncode == 130, result.stderr
    assert "stopping" in result.stderr
    info = ffprobe(tmp_path / "live.mp4")
    frames = int(stream(info, "video")["nb_read_frames"])
    assert 20 < frames < 280
    assert stream(info, "audio") is not None


def test_second_ctrl_c_aborts_and_still_finalizes(long_clip: Path, tmp_path: Path) -> None:
    result = interrupted_run(paced_graph(tmp_path, long_clip, delay_ms=300), 2, tmp_path)
    assert result.returncode == 130
    assert "aborting" in result.stderr
    info = ffprobe(tmp_path / "live.mp4")
    assert int(stream(info, "video")["nb_read_frames"]) > 0


def test_images_round_trip_with_their_names(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    images = {}
    for name in ("b_photo", "a_photo", "c_photo"):
        img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
        cv2.imwrite(str(src / f"{name}.png"), img)
        images[name] = img
    (src / "notes.txt").write_text("ignored")
    run_graph({"nodes": {
        "src": {"plugin": "image_source", "path": str(src)},
        "out": {"plugin": "image_sink", "input": "src", "path": str(tmp_path / "out/{stem}.png")},
        "log": {"plugin": "jsonl_sink", "input": "src", "path": str(tmp_path / "log.jsonl")}}})
    for name, img in images.items():
        assert np.array_equal(cv2.imread(str(tmp_path / "out" / f"{name}.png")), img)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["source"] for r in records] == ["a_photo.png", "b_photo.png", "c_photo.png"]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert set(records[0]) == {"stream", "index", "pts", "time", "source", "detections"}


def test_jsonl_lines_carry_detections_and_labels(tmp_path: Path) -> None:
    import torch

    from pipeline.core.frame import Detections, Frame
    from pipeline.kit.testing import run_node

    dets = Detections(boxes=torch.tensor([[1.0, 2.0, 30.5, 40.0]]), scores=torch.tensor([0.9]),
                      landmarks=torch.arange(10, dtype=torch.float32).reshape(1, 5, 2),
                      labels=("happy",), label_scores=torch.tensor([0.75]))
    frame = Frame.from_image(torch.zeros(8, 8, 3, dtype=torch.uint8), pts=512,
                             time_base=__import__("fractions").Fraction(1, 1024), stream="cam",
                             index=4, meta={"detections": dets, "label": "face",
                                            "scores": {"face": 0.8}})
    path = tmp_path / "d.jsonl"
    run_node("jsonl_sink", [frame], path=str(path))
    record = json.loads(path.read_text())
    assert record == {
        "stream": "cam", "index": 4, "pts": 512, "time": 0.5, "source": None,
        "detections": [{"box": [1.0, 2.0, 30.5, 40.0], "score": 0.9,
                        "landmarks": [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0],
                                      [8.0, 9.0]],
                        "label": "happy", "label_score": 0.75}],
        "label": "face", "scores": {"face": 0.8}}


def test_resize_then_encode_has_the_new_size(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.mp4"
    result = run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip)},
        "small": {"plugin": "resize", "input": "src", "width": 160},
        "out": {"plugin": "video_sink", "input": "small", "audio": "src.audio",
                "path": str(out)}}})
    assert result.status is RunStatus.OK
    v = stream(ffprobe(out), "video")
    assert (v["width"], v["height"], int(v["nb_read_frames"])) == (160, 120, 60)


def test_rate_limit_halves_the_rate_and_leaves_pts_gaps(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "15fps.mp4"
    run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip)},
        "cap": {"plugin": "rate_limit", "input": "src", "fps": 15},
        "out": {"plugin": "video_sink", "input": "cap", "path": str(out)}}})
    info = ffprobe(out)
    assert int(stream(info, "video")["nb_read_frames"]) == 30
    assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.1)


def test_url_that_refuses_is_one_line_exit_1(tmp_path: Path) -> None:
    # live: false opens once, before the graph starts (a live source would retry).
    result = transcode("rtsp://127.0.0.1:9/cam", tmp_path / "o.mp4", "--set", "src.live=false")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: node 'src': cannot open 'rtsp://127.0.0.1:9/cam': "
                                     "Connection refused")


def test_live_url_without_retries_gives_up_in_one_line(tmp_path: Path) -> None:
    result = transcode("rtsp://127.0.0.1:9/cam", tmp_path / "o.mp4", "--set",
                       "src.max_retries=0")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [
        "error: node 'src': stream 'src': gave up after no retry: cannot open "
        "'rtsp://127.0.0.1:9/cam': Connection refused"]


def test_url_that_never_answers_times_out(tmp_path: Path) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/video.mp4"
        started = time.monotonic()
        result = transcode(url, tmp_path / "o.mp4", "--set", "src.open_timeout=1",
                           "--set", "src.read_timeout=1", "--set", "src.max_retries=0")
    assert time.monotonic() - started < 15
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert errors == [f"error: node 'src': stream 'src': gave up after no retry: "
                      f"cannot open '{url}': no answer in 1 s"]
