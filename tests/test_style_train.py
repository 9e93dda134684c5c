"""`vidgraph train style` on real pictures, the style_transfer node on real clips, and the
classic filters."""

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pipeline.app.cli import main
from pipeline.core.errors import VidgraphError
from pipeline.core.executor import RunStatus
from pipeline.core.frame import Frame
from pipeline.kit.testing import run_graph, run_node
from plugins.media.clips import make_clip
from plugins.style import checkpoint
from plugins.style.filters import apply_lut, read_cube, warm_film

from .conftest import ffprobe, stream


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        cv2.imwrite(str(folder / f"{name}.png"), getattr(data, name)()[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def painting(tmp_path_factory) -> Path:
    """Bold diagonal brush-like strokes in two colours: a style easy to tell apart."""
    rng = np.random.default_rng(0)
    canvas = np.full((160, 160, 3), (30, 60, 160), np.uint8)
    for _ in range(60):
        x, y = rng.integers(0, 160, 2)
        cv2.line(canvas, (int(x), int(y)), (int(x) + 25, int(y) + 25), (240, 200, 40), 4)
    path = tmp_path_factory.mktemp("style") / "strokes.png"
    cv2.imwrite(str(path), canvas)
    return path


@pytest.fixture(scope="module")
def trained(photos, painting, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "strokes.pt"
    assert main(["train", "style", "--style", str(painting), "--content", str(photos),
                 "--out", str(out), "--width", "0.25", "--blocks", "2", "--size", "48",
                 "--style-size", "128", "--iterations", "30", "--batch-size", "2",
                 "--lr", "3e-3", "--preview-every", "20", "--threads", "2"]) == 0
    return out


def test_short_training_run_lowers_style_and_content_losses(trained):
    _, info = checkpoint.load(str(trained))
    history = info["history"]
    first, last = history[:6], history[-6:]
    for name in ("style", "content"):
        assert np.mean([h[name] for h in last]) < 0.7 * np.mean([h[name] for h in first])
    assert info["style"] == "strokes.png" and len(info["style_sha256"]) == 64
    assert trained.with_suffix(".preview.png").is_file()


def test_checkpoint_round_trips(trained, tmp_path):
    net, info = checkpoint.load(str(trained))
    again = tmp_path / "again.pt"
    checkpoint.save(again, net, "johnson", {"width": 0.25, "blocks": 2}, info)
    twin, _ = checkpoint.load(str(again))
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        assert torch.equal(net(x), twin(x))


def test_content_frames_can_come_from_a_video(painting, tmp_path):
    video = make_clip(tmp_path / "footage.mp4", seconds=1.0, width=160, height=120,
                      audio=False)
    out = tmp_path / "from_video.pt"
    assert main(["train", "style", "--style", str(painting), "--content", str(video),
                 "--out", str(out), "--width", "0.25", "--blocks", "1", "--size", "64",
                 "--iterations", "3", "--batch-size", "2", "--preview-every", "0",
                 "--temporal-weight", "10", "--frames", "10"]) == 0
    _, info = checkpoint.load(str(out))
    assert info["content_pictures"] == 10 and "temporal" in info["final_losses"]


def test_strength_zero_returns_the_input(trained):
    rng = np.random.default_rng(3)
    frames = [Frame.from_image(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8), index=i)
              for i in range(3)]
    out = run_node("style_transfer", frames, model=str(trained), strength=0.0)
    assert all(torch.equal(a.image, b.image) for a, b in zip(frames, out, strict=True))


def test_stylised_clip_keeps_frame_count_and_sound(trained, clip, tmp_path):
    out = tmp_path / "painted.mp4"
    result = run_graph(f"""
nodes:
  src: {{plugin: video_source, url: {clip}}}
  paint: {{plugin: style_transfer, input: src, model: {trained}, batch_size: 4}}
  sink: {{plugin: video_sink, input: paint, audio: src.audio, path: {out}}}
""")
    assert result.status is RunStatus.OK, result.error
    before, after = ffprobe(clip), ffprobe(out)
    assert stream(after, "audio") is not None
    assert stream(after, "video")["nb_read_frames"] == stream(before, "video")["nb_read_frames"]
    first = [cv2.VideoCapture(str(p)).read()[1].astype(float) for p in (clip, out)]
    assert np.abs(first[0] - first[1]).mean() > 10


def flicker(frames: list[Frame]) -> float:
    pictures = [f.image.float() for f in frames]
    return float(np.mean([(b - a).abs().mean() for a, b in itertools.pairwise(pictures)]))


def test_temporal_blending_lowers_flicker_on_a_static_camera(trained):
    from skimage import data

    scene = cv2.resize(data.chelsea(), (96, 64)).astype(float)
    rng = np.random.default_rng(5)
    noisy = [Frame.from_image(np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255)
                              .astype(np.uint8), index=i, stream="cam") for i in range(12)]
    plain = run_node("style_transfer", noisy, model=str(trained))
    steady = run_node("style_transfer", noisy, model=str(trained), temporal=0.8)
    ratio_plain, ratio_steady = flicker(plain) / flicker(noisy), flicker(steady) / flicker(noisy)
    assert ratio_steady < 0.6 * ratio_plain


@pytest.mark.parametrize("effect", ["cartoon", "pencil", "stylize", "detail", "color_grade"])
def test_each_filter_changes_the_picture_and_keeps_its_size(effect):
    from skimage import data

    picture = cv2.resize(data.astronaut(), (160, 120))
    (out,) = run_node("filter", [Frame.from_image(picture)], effect=effect)
    assert out.image.shape == (120, 160, 3) and out.image.dtype == torch.uint8
    assert (out.image.float() - torch.from_numpy(picture).float()).abs().mean() > 3


def _cube(path: Path, size: int, rows: list[str]) -> Path:
    path.write_text(f'TITLE "test"\nLUT_3D_SIZE {size}\n' + "\n".join(rows) + "\n")
    return path


def test_identity_cube_keeps_colours_and_warm_look_warms(tmp_path):
    corners = [f"{r} {g} {b}" for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    lut = read_cube(_cube(tmp_path / "identity.cube", 2, corners))
    picture = torch.randint(0, 256, (2, 17, 23, 3), dtype=torch.uint8)
    assert (apply_lut(picture, lut).int() - picture.int()).abs().max() <= 1
    gray = torch.arange(0, 256, dtype=torch.uint8)[None, None, :, None].expand(1, 1, 256, 3)
    warm = apply_lut(gray.contiguous(), warm_film()).float()[0, 0, 128:]
    assert (warm[:, 0] - warm[:, 2]).mean() > 8  # highlights: red above blue


def test_bad_cube_is_named_with_its_line(tmp_path):
    bad = _cube(tmp_path / "bad.cube", 2, ["0 0 0", "1 zero 0"])
    with pytest.raises(VidgraphError, match=r"bad.cube' line 4"):
        read_cube(bad)


def test_n_steps_then_resume_then_m_steps_equal_n_plus_m_steps_bit_for_bit(photos, painting,
                                                                            tmp_path):
    common = ["train", "style", "--style", str(painting), "--content", str(photos),
              "--width", "0.25", "--blocks", "1", "--size", "32", "--style-size", "64",
              "--iterations", "6", "--batch-size", "1", "--temporal-weight", "1",
              "--threads", "1"]
    whole, parts = tmp_path / "whole.pt", tmp_path / "parts.pt"
    assert main([*common, "--out", str(whole)]) == 0
    assert main([*common, "--out", str(parts), "--chunk", "2"]) == 0
    state = parts.with_suffix(".state.pt")
    assert main([*common, "--out", str(parts), "--resume", str(state)]) == 0
    one = torch.load(whole.with_suffix(".state.pt"), weights_only=False)
    chunked = torch.load(state, weights_only=False)
    assert chunked["kept"]["history"] == one["kept"]["history"]  # every loss of every step
    for name, tensor in one["parts"]["net"].items():
        assert torch.equal(tensor, chunked["parts"]["net"][name]), name
    _, info = checkpoint.load(str(parts))
    assert len(info["commands"]) == 2 and "--resume" in info["commands"][1]


def test_init_goes_on_from_a_trained_network_and_records_its_training(trained, photos,
                                                                      painting, tmp_path):
    common = ["train", "style", "--style", str(painting), "--content", str(photos),
              "--init", str(trained), "--size", "32", "--style-size", "64",
              "--iterations", "2", "--batch-size", "1", "--threads", "1"]
    tuned = tmp_path / "tuned.pt"
    # a rate of zero keeps the start file's weights; the size comes from that file
    assert main([*common, "--out", str(tuned), "--width", "0.25", "--lr", "0"]) == 0
    start, end = torch.load(trained)["state_dict"], torch.load(tuned)["state_dict"]
    assert start.keys() == end.keys()
    assert all(torch.equal(start[k], end[k]) for k in start)
    _, info = checkpoint.load(str(tuned))
    assert info["init"]["model"] == str(trained)
    assert "--iterations 30" in info["init"]["commands"][0]
    # another width or depth than the start file's: refused in one line
    assert main([*common, "--out", str(tuned), "--width", "0.5"]) == 1
    assert main([*common, "--out", str(tuned), "--width", "0.25", "--blocks", "3"]) == 1
