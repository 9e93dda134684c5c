"""Odd media just works: odd frame sizes are padded (or cropped) to what the encoder takes,
sizes no encoder takes are one clear line, and sound the container cannot hold is encoded
to AAC, said once; a failing sink never crashes the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import pytest

from plugins.media.clips import make_clip

from .conftest import ROOT, ffprobe, stream, vidgraph


def transcode(src: Path, dst: Path, *extra: str) -> subprocess.CompletedProcess:
    return vidgraph("run", "graphs/transcode.yaml", "--quiet", "--set", f"src.url={src}",
                    "--set", f"out.path={dst}", *extra)


@pytest.mark.parametrize(("odd_size", "size"), [("pad", (322, 242)), ("crop", (320, 240))])
def test_an_odd_frame_size_is_made_even_and_said_once(tmp_path: Path, odd_size: str,
                                                       size: tuple[int, int]) -> None:
    clip = make_clip(tmp_path / "odd.mp4", seconds=1.0, width=321, height=241,
                     pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    result = transcode(clip, out, "--set", f"out.odd_size={odd_size}")
    assert result.returncode == 0, result.stderr
    verb = "padding" if odd_size == "pad" else "cropping"
    assert result.stderr == (f"vidgraph: node 'out': 321x241 is odd and yuv420p needs even "
                             f"sides: {verb} to {size[0]}x{size[1]}\n")
    info = ffprobe(out)
    video = stream(info, "video")
    assert (video["width"], video["height"]) == size
    assert int(video["nb_read_frames"]) == 30 and stream(info, "audio") is not None


def test_a_one_pixel_video_is_padded_to_two(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "one.mkv", seconds=0.5, width=1, height=1, codec="ffv1",
                     pix_fmt="yuv444p")
    out = tmp_path / "out.mp4"
    assert transcode(clip, out).returncode == 0
    video = stream(ffprobe(out), "video")
    assert (video["width"], video["height"]) == (2, 2) and int(video["nb_read_frames"]) == 15


def test_a_size_the_encoder_refuses_is_one_line_and_no_file(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "wide.mkv", seconds=0.2, width=16386, height=16, codec="ffv1",
                     pix_fmt="yuv444p", audio=False)
    out = tmp_path / "out.mp4"
    result = transcode(clip, out)
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: node 'out' on frame 1 of stream 'src' (pts ")  # the 1st waits
    assert f"): cannot write '{out}': libx264 cannot encode 16386x16 yuv420p (" in line
    assert not out.exists()


@pytest.mark.parametrize(("codec", "ext", "copied"), [
    ("wmav2", "avi", False), ("pcm_mulaw", "avi", False), ("adpcm_ima_wav", "avi", False),
    ("pcm_s16le", "mkv", False), ("vorbis", "mkv", True), ("aac", "mp4", True)])
def test_sound_the_container_cannot_hold_is_encoded_to_aac(tmp_path: Path, codec: str,
                                                           ext: str, copied: bool) -> None:
    clip = make_clip(tmp_path / f"in.{ext}", seconds=1.0, audio_codec=codec)
    out = tmp_path / "out.mp4"
    result = transcode(clip, out)
    assert result.returncode == 0, result.stderr
    if copied:
        assert result.stderr == ""
    else:
        assert result.stderr == (f"vidgraph: node 'out': {codec} audio cannot go into mp4 as "
                                 "is: encoding it to AAC\n")
    info = ffprobe(out)
    audio = stream(info, "audio")
    assert audio["codec_name"] == ("vorbis" if codec == "vorbis" else "aac")
    # the output starts with the first picture: sound before it is not kept (PyAV's AVI
    # muxer starts the pictures at 0.1 s)
    with av.open(str(clip)) as container:
        starts = next(container.decode(video=0)).time
    assert float(audio["duration"]) == pytest.approx(1.0 - starts, abs=0.1)
    assert int(stream(info, "video")["nb_read_frames"]) == 30
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"],
                             capture_output=True, text=True)
    assert decoded.returncode == 0 and decoded.stderr == ""  # plays without a complaint


def test_copy_only_says_why_it_cannot(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "in.avi", seconds=0.5, audio_codec="wmav2")
    out = tmp_path / "out.mp4"
    result = transcode(clip, out, "--set", "out.audio_codec=copy")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].endswith(
        f"cannot write '{out}': a mp4 file cannot hold wmav2 audio as is (audio_codec: auto "
        "or aac encodes it to AAC)")
    assert not out.exists()


def test_no_sound_when_asked(tmp_path: Path, clip: Path) -> None:
    out = tmp_path / "out.mp4"
    assert transcode(clip, out, "--set", "out.audio_codec=none").returncode == 0
    assert stream(ffprobe(out), "audio") is None


FAILING_SINK = """
import faulthandler, sys
from pipeline.kit.testing import run_graph
from plugins.media.clips import make_clip
clip = make_clip(sys.argv[1] + '/odd.mp4', seconds=3.0, width=321, height=241,
                 pix_fmt='yuv444p')
for i in range(int(sys.argv[2])):
    result = run_graph({'nodes': {
        'src': {'plugin': 'video_source', 'url': str(clip)},
        'out': {'plugin': 'video_sink', 'input': 'src', 'audio': 'src.audio',
                'path': sys.argv[1] + f'/out{i}.mp4', 'options': {'x264opts': 'bogus=1'}}}})
    assert result.error is not None, i
print('survived', flush=True)
"""


def test_a_sink_failing_while_its_source_decodes_never_crashes(tmp_path: Path) -> None:
    """The encoder fails at the first frame (a bad option) while the source is still
    decoding and the sound is waiting to be written: 30 times in a row in one process,
    under faulthandler, the process ends normally."""
    run = subprocess.run([sys.executable, "-X", "faulthandler", "-c", FAILING_SINK,
                          str(tmp_path), "30"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "survived"
