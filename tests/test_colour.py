"""Frames cross to a GPU as 4:2:0 planes and come back as them: the tensor conversions
against swscale, on real pictures and real encoded files."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Interpolation
from skimage import data

from pipeline.core.device import tensor_code
from pipeline.core.frame import Frame
from pipeline.kit.colour import matrix_of, rgb_to_yuv420, yuv420_to_rgb
from pipeline.kit.testing import run_node
from plugins.media.picture import DecodedPicture, cosited

from .conftest import ffprobe, stream

#: swscale's accurate path, which the tensor code follows
_UP = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_DOWN = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
#: FFmpeg's codes: colour spaces BT.709 and BT.470BG (BT.601); ranges limited and full
_BT709, _BT601, _LIMITED, _FULL = 1, 5, 1, 2


def _pictures() -> list[np.ndarray]:
    """The astronaut (a photo, 512x512) and noise at an odd-height crop (hard chroma)."""
    noise = np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)
    return [np.ascontiguousarray(data.astronaut()), noise]


def _planes(frame: av.VideoFrame) -> list[torch.Tensor]:
    return [torch.from_numpy(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)
                             [:, :p.width].copy()) for p in frame.planes]


def _worst(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> int:
    return int(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).max())


@pytest.mark.parametrize("colorspace", [_BT601, _BT709])
@pytest.mark.parametrize("color_range", [_LIMITED, _FULL])
def test_yuv420_to_rgb_within_one_level_of_swscale(colorspace: int, color_range: int) -> None:
    for rgb in _pictures():
        yuv = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", dst_colorspace=colorspace, dst_color_range=color_range)
        yuv.colorspace, yuv.color_range = colorspace, color_range
        want = yuv.reformat(format="rgb24", interpolation=_UP, src_colorspace=colorspace,
                            src_color_range=color_range).to_ndarray()
        got = yuv420_to_rgb(*_planes(yuv), matrix_of(colorspace), color_range == _FULL)
        assert got.dtype == torch.uint8 and got.shape == want.shape
        assert _worst(got, want) <= 1


@pytest.mark.parametrize("colorspace", [_BT601, _BT709])
@pytest.mark.parametrize("color_range", [_LIMITED, _FULL])
def test_rgb_to_yuv420_within_one_level_of_swscale(colorspace: int, color_range: int) -> None:
    for rgb in _pictures():
        want = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
            format="yuv420p", interpolation=_DOWN, dst_colorspace=colorspace,
            dst_color_range=color_range)
        got = rgb_to_yuv420(torch.from_numpy(rgb), matrix_of(colorspace), color_range == _FULL)
        for ours, theirs in zip(got, _planes(want), strict=True):
            assert ours.shape == theirs.shape
            assert _worst(ours, theirs) <= 1


def test_odd_sides_keep_their_chroma() -> None:
    rgb = torch.from_numpy(_pictures()[0][:101, :77])
    y, u, v = rgb_to_yuv420(rgb)
    assert (y.shape, u.shape, v.shape) == ((101, 77), (51, 39), (51, 39))
    back = yuv420_to_rgb(y, u, v)
    assert back.shape == rgb.shape
    assert (back.float() - rgb.float()).abs().mean() < 6  # only chroma detail is lost


def _decoded(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def test_decoded_picture_on_device_matches_swscale(clip: Path) -> None:
    """A decoded H.264 frame uploaded as planes and converted by tensor code (on the CPU
    here; a GPU runs the same code) is swscale's accurate RGB within one level, scaled by
    swscale or not. H.264's chroma sits on the even columns: read as centred, the colour
    bars' edges are off by more."""
    for frame in _decoded(clip)[:5]:
        picture = DecodedPicture(frame, cosited("h264"))
        want = frame.reformat(format="rgb24", interpolation=_UP).to_ndarray()
        got = picture.to_device(torch.device("cpu"))
        assert _worst(got, want) <= 1
        assert _worst(DecodedPicture(frame).to_device(torch.device("cpu")), want) > 1
        small = picture.scaled(160, 120, "area")
        want = small.frame.reformat(format="rgb24", interpolation=_UP).to_ndarray()
        assert _worst(small.to_device(torch.device("cpu")), want) <= 1
        # swscale's fast path, which the CPU takes, is within a few levels of both
        assert float((got.float() - picture.to_image().float()).abs().mean()) < 1.5


def test_full_range_tag_is_honoured(clip: Path) -> None:
    """A yuv420p picture tagged full range is read as full range on the device too, as
    swscale reads it on the host (else blacks are lifted and whites dimmed)."""
    frame = _decoded(clip)[0]
    limited = DecodedPicture(frame, cosited("h264")).to_device(torch.device("cpu"))
    frame.color_range = _FULL
    host = DecodedPicture(frame, cosited("h264")).to_image()
    device = DecodedPicture(frame, cosited("h264")).to_device(torch.device("cpu"))
    assert _worst(device, limited) > 8
    assert float((host.float() - device.float()).abs().mean()) < 1.5


def test_frame_to_device_converts_the_native_picture(clip: Path) -> None:
    frame = Frame(pts=0, time_base=Fraction(1, 25), native=DecodedPicture(_decoded(clip)[0]))
    assert frame.to(torch.device("cpu")) is frame and not frame.has_pixels


def test_video_sink_encodes_planes_made_by_tensor_code(tmp_path: Path) -> None:
    """The sink's GPU branch (pictures become yuv420p where they lie, only the planes come
    back) writes the same video as swscale's conversion, checked by ffprobe and decoding."""
    rgb = torch.from_numpy(np.ascontiguousarray(data.astronaut()[:250, :300]))
    frames = [Frame.from_image(rgb.roll(4 * k, dims=1), pts=k, time_base=Fraction(1, 25),
                              index=k)
              for k in range(12)]
    host, device = tmp_path / "host.mp4", tmp_path / "device.mp4"
    run_node("video_sink", frames, path=str(host), crf=10)
    with tensor_code():
        run_node("video_sink", frames, path=str(device), crf=10)
    info = stream(ffprobe(device), "video")
    assert info is not None
    assert (info["width"], info["height"], info["pix_fmt"]) == (300, 250, "yuv420p")
    assert int(info["nb_read_frames"]) == 12
    assert host.read_bytes() != device.read_bytes()  # the other conversion ran
    for a, b in zip(_decoded(host), _decoded(device), strict=True):
        diff = np.abs(a.to_ndarray(format="rgb24").astype(int)
                      - b.to_ndarray(format="rgb24").astype(int))
        assert diff.mean() < 2.0
