"""``clip_sink``: a face that appears at 5 s in a film gives a clip that starts at the keyframe
``pre_roll`` before it, holds the face, ends ``post_roll`` after it leaves, plays, and holds
the film's own packets; clips are announced as events; ``max_clip`` and the disk floor hold."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.core.executor import RunStatus
from pipeline.kit.testing import run_graph
from plugins.media.clips import make_clip

from .conftest import ffprobe, stream

FPS, GOP = 30, 30  # a keyframe every second
FACE_FROM, FACE_UNTIL = 5.0, 7.0  # seconds
PRE, POST = 2.0, 1.5


@pytest.fixture(scope="module")
def film(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of a grey wall, with a face in the middle from 5 s to 7 s; sound throughout."""
    face = cv2.resize(data.astronaut()[:260, 100:360], (120, 120))
    wall = np.full((240, 320, 3), 110, np.uint8)

    def picture(i: int) -> np.ndarray:
        img = wall.copy()
        img[:, :, 0] += np.uint8(i % 7)  # the wall changes a little: real packets
        if FACE_FROM <= i / FPS < FACE_UNTIL:
            img[60:180, 100:220] = face
        return img

    return make_clip(tmp_path_factory.mktemp("film") / "door.mp4", seconds=12, fps=FPS,
                     gop=GOP, pictures=picture)


def packets(path: Path, kind: str = "video") -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        chosen = container.streams.video[0] if kind == "video" else container.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in container.demux(chosen)
                if p.size and p.pts is not None]


def clip_graph(film: Path, out: Path, **clip: object) -> dict:
    return {"nodes": {
        "src": {"plugin": "video_source", "url": str(film)},
        "faces": {"plugin": "mtcnn", "input": "src"},
        "clips": {"plugin": "clip_sink", "trigger": "faces", "packets": "src.packets",
                  "audio": "src.audio", "path": str(out / "{stream}-{n}.mp4"),
                  "pre_roll": PRE, "post_roll": POST, "min_free_mb": 0, **clip},
        "log": {"plugin": "jsonl_sink", "events": "clips.events",
                "path": str(out / "clips.jsonl")}}}


def test_a_face_at_5_s_gives_one_clip_with_pre_and_post_roll(film: Path,
                                                              tmp_path: Path) -> None:
    result = run_graph(clip_graph(film, tmp_path))
    assert result.status is RunStatus.OK, result.error
    records = [json.loads(line) for line in (tmp_path / "clips.jsonl").read_text().splitlines()]
    assert len(records) == 1, records
    record = records[0]
    assert record["event"] == "clip" and record["stream"] == "src"
    assert record["trigger"] == "detections"
    assert FACE_FROM <= record["triggered_at"] < FACE_FROM + 0.2  # the face's first frames
    clip = Path(record["path"])
    assert clip == tmp_path / "src-1.mp4"
    # starts at the keyframe at or before 5 - pre_roll: between 5 - pre_roll - GOP and there
    start = record["start"]
    assert FACE_FROM - PRE - GOP / FPS <= start <= FACE_FROM - PRE
    # ends post_roll after the face's last frame (within a frame)
    assert record["end"] == pytest.approx(FACE_UNTIL + POST, abs=2 / FPS)
    info = ffprobe(clip)
    frames = int(stream(info, "video")["nb_read_frames"])
    assert frames == round((record["end"] - start) * FPS)
    assert float(info["format"]["duration"]) == pytest.approx(record["end"] - start, abs=0.05)
    # the film's own packets, from the start keyframe on
    source = [data for t, data in packets(film) if start - 1e-6 <= t < record["end"] - 1e-6]
    assert [data for _, data in packets(clip)] == source
    sound = packets(clip, "audio")
    assert sound and sound[0][0] <= 0.03 and sound[-1][0] >= frames / FPS - 0.05
    # the face is in it: decode the clip's frames at 5-7 s of the film
    with av.open(str(clip)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    middle = round((FACE_FROM + 1 - start) * FPS)
    assert np.abs(pictures[middle][60:180, 100:220].astype(int) - 110).mean() > 30
    assert np.abs(pictures[0][60:180, 100:220].astype(int) - 110).mean() < 10


def test_max_clip_splits_and_a_full_disk_writes_nothing(film: Path, tmp_path: Path) -> None:
    split = tmp_path / "split"
    result = run_graph(clip_graph(film, split, max_clip=2.5))
    assert result.status is RunStatus.OK, result.error
    records = [json.loads(line) for line in (split / "clips.jsonl").read_text().splitlines()]
    assert len(records) == 2  # 3 s to 8.5 s: to the first keyframe 2.5 s on (6 s), the rest
    for record in records:
        assert record["end"] - record["start"] <= 2.5 + GOP / FPS + 1e-6
        frames = int(stream(ffprobe(record["path"]), "video")["nb_read_frames"])
        assert frames == round((record["end"] - record["start"]) * FPS)
    for before, after in itertools.pairwise(records):
        assert after["start"] == pytest.approx(before["end"], abs=1e-3)  # nothing lost
    split_packets = [data for r in records for _, data in packets(Path(r["path"]))]
    assert split_packets == [data for t, data in packets(film)
                             if records[0]["start"] - 1e-6 <= t < records[-1]["end"] - 1e-6]
    full = tmp_path / "full"
    result = run_graph(clip_graph(film, full, min_free_mb=1e12))
    assert result.status is RunStatus.OK, result.error
    assert result.metrics.nodes["clips"].counters["clips_skipped_disk_full"] >= 1
    assert not list(full.glob("*.mp4"))
    assert (full / "clips.jsonl").read_text() == ""


def test_any_event_on_the_events_input_triggers_a_clip(film: Path, tmp_path: Path) -> None:
    result = run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(film)},
        "motion": {"python": "tests.helpers:EventAt", "input": "src", "index": 150},
        "sink": {"plugin": "null_sink", "input": "motion"},
        "clips": {"plugin": "clip_sink", "events": "motion.events", "packets": "src.packets",
                  "path": str(tmp_path / "{stream}-{start}.mp4"), "pre_roll": PRE,
                  "post_roll": POST, "min_free_mb": 0},
        "log": {"plugin": "jsonl_sink", "events": "clips.events",
                "path": str(tmp_path / "clips.jsonl")}}})
    assert result.status is RunStatus.OK, result.error
    records = [json.loads(line) for line in (tmp_path / "clips.jsonl").read_text().splitlines()]
    assert [r["trigger"] for r in records] == ["motion"]
    record = records[0]
    # the event's time is the newest picture the sink holds: frame 150 or a little later
    assert FACE_FROM <= record["triggered_at"] < FACE_FROM + 0.5
    assert record["start"] == pytest.approx(3.0)
    assert record["end"] == pytest.approx(record["triggered_at"] + POST, abs=2 / FPS)
    assert Path(record["path"]).name == f"src-{record['triggered_at']:.3f}.mp4"
    assert stream(ffprobe(record["path"]), "audio") is None  # no sound asked for


def test_a_live_camera_showing_the_face_at_5_s_gives_a_clip_of_its_own_packets(
        cameras, film: Path, tmp_path: Path) -> None:
    camera = cameras(film=film)
    result = run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": camera.url, "max_frames": 300},
        "faces": {"plugin": "mtcnn", "input": "src", "every": 2},
        "rec": {"plugin": "video_sink", "packets": "src.packets",
                "path": str(tmp_path / "all.mp4")},
        "clips": {"plugin": "clip_sink", "trigger": "faces", "packets": "src.packets",
                  "audio": "src.audio", "path": str(tmp_path / "{stream}-{n}.mp4"),
                  "pre_roll": PRE, "post_roll": POST, "min_free_mb": 0},
        "log": {"plugin": "jsonl_sink", "events": "clips.events",
                "path": str(tmp_path / "clips.jsonl")}}})
    assert result.status is RunStatus.OK, result.error
    records = [json.loads(line) for line in (tmp_path / "clips.jsonl").read_text().splitlines()]
    assert len(records) == 1, records
    record = records[0]
    # the camera's timeline starts at the first picture the client could decode, a keyframe
    # of the film: the face comes at 5 s of the film, 4 or 5 s after that
    seen = record["triggered_at"]
    assert FACE_FROM - 1.1 <= seen <= FACE_FROM + 0.1
    assert seen - PRE - GOP / FPS - 0.05 <= record["start"] <= seen - PRE + 0.05
    clip = Path(record["path"])
    with av.open(str(clip)) as container:
        pictures = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    # the stream's times are the camera's: in about 1 run in 10 on a 2-core machine its
    # pictures came 36 ms apart, not 33, so the face's 60 pictures are counted in its pace
    pace = (record["end"] - record["start"]) / len(pictures)
    assert pace == pytest.approx(1 / FPS, rel=0.15)
    face = (FACE_UNTIL - FACE_FROM) * FPS * pace
    assert record["end"] == pytest.approx(seen + face + POST, abs=3 / FPS)
    middle = round((seen - record["start"]) / pace) + FPS  # the face's 31st picture
    assert np.abs(pictures[middle][60:180, 100:220].astype(int) - 110).mean() > 30
    info = ffprobe(clip)
    assert int(stream(info, "video")["nb_read_frames"]) == len(pictures)
    assert stream(info, "audio") is not None
    # the camera's packets as the full recording holds them, from the clip's start on
    recorded = packets(tmp_path / "all.mp4")
    offset = recorded[0][0]  # both outputs start at 0: the recording at the first picture
    kept = [data for t, data in recorded
            if record["start"] - 1e-3 <= t + offset < record["end"] - 1e-3]
    assert [data for _, data in packets(clip)] == kept
