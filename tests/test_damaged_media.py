"""Damaged and truncated inputs are decoded as far as they go, and said so: one warning
naming the node, the file and what was lost, counts in --stats, exit 1 only with strict;
a reader's queues stay bounded."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path

import pytest

from plugins.media.clips import make_clip
from plugins.media.stream_reader import AUDIO_SLOTS, EVENT_SLOTS, ReadOptions, StreamReader

from .conftest import ffprobe, stream, vidgraph


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s Matroska clip, the same cut in half, and the same with bytes flipped."""
    folder = tmp_path_factory.mktemp("damaged")
    whole = make_clip(folder / "whole.mkv", seconds=2.0)
    data = whole.read_bytes()
    (folder / "cut.mkv").write_bytes(data[:len(data) // 2])
    flipped = bytearray(data)
    for i in range(len(data) // 3, len(data) // 3 + 4000, 50):
        flipped[i] ^= 0xFF
    (folder / "flipped.mkv").write_bytes(bytes(flipped))
    return {"whole": whole, "cut": folder / "cut.mkv", "flipped": folder / "flipped.mkv"}


def transcode(src: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return vidgraph("run", "graphs/transcode.yaml", "--quiet", "--set", f"src.url={src}",
                    "--set", f"out.path={tmp_path / 'out.mp4'}",
                    "--stats", str(tmp_path / "stats.json"), *extra)


def counts(tmp_path: Path) -> dict[str, int]:
    return json.loads((tmp_path / "stats.json").read_text())["nodes"]["src"]["counts"]


def test_an_intact_file_says_nothing(damaged: dict[str, Path], tmp_path: Path) -> None:
    result = transcode(damaged["whole"], tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert counts(tmp_path) == {}


def test_a_truncated_file_gives_what_it_has_and_says_what_was_lost(
        damaged: dict[str, Path], tmp_path: Path) -> None:
    result = transcode(damaged["cut"], tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"vidgraph: node 'src': '{damaged['cut']}' is damaged: ")
    lost = counts(tmp_path)["frames_lost"]
    assert f"{lost} of 61 frames lost" in lines[0]  # 61: estimated from the duration
    decoded = int(stream(ffprobe(tmp_path / "out.mp4"), "video")["nb_read_frames"])
    assert decoded > 20 and decoded + lost == 61


def test_damaged_packets_are_skipped_and_counted(damaged: dict[str, Path],
                                                 tmp_path: Path) -> None:
    result = transcode(damaged["flipped"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "damaged packets skipped" in result.stderr
    assert counts(tmp_path)["damaged_packets"] >= 1
    assert int(stream(ffprobe(tmp_path / "out.mp4"), "video")["nb_read_frames"]) > 50


def test_strict_fails_the_run_on_a_damaged_file(damaged: dict[str, Path],
                                                tmp_path: Path) -> None:
    result = transcode(damaged["cut"], tmp_path, "--set", "src.strict=true")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(
        f"error: node 'src': '{damaged['cut']}' is damaged: ")
    assert "(strict: true)" in result.stderr
    assert int(stream(ffprobe(tmp_path / "out.mp4"), "video")["nb_read_frames"]) > 20


def test_a_live_reader_drops_and_counts_sound_and_events_the_node_does_not_take() -> None:
    out: queue.Queue = queue.Queue()
    lost: dict[str, int] = {}

    def count(what: str, n: int) -> None:
        lost[what] = lost.get(what, 0) + n

    reader = StreamReader("src", "cam", "rtsp://127.0.0.1:9/x", ReadOptions(live=True), out,
                          threading.Event(), count)
    for i in range(AUDIO_SLOTS + 10):
        assert reader._put_audio(i, reader.generation)
        reader._event("test", n=i)
    assert out.qsize() == AUDIO_SLOTS + EVENT_SLOTS  # never more, however long it goes on
    assert lost == {"audio_dropped": 10, "events_dropped": 10}
    reader.taken("audio")  # the node took one: room for one more
    assert reader._put_audio("late", reader.generation) and out.qsize() == AUDIO_SLOTS + \
        EVENT_SLOTS + 1
    assert lost["audio_dropped"] == 10
