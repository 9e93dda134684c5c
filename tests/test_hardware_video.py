"""NVDEC and NVENC through PyAV, and their software fallbacks: where the GPU or its video
engine is missing, a graph that asks for them still runs, and says so once."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from pipeline.kit.testing import run_graph
from plugins.media import hardware

from .conftest import ffprobe, stream


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    hardware._told.clear()


def _fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "software" in r.getMessage()]


def _transcode(clip: Path, out: Path, **source: object) -> None:
    run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip), **source},
        "out": {"plugin": "video_sink", "input": "src", "path": str(out)}}})


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_hwaccel_without_cuda_decodes_in_software(clip: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vidgraph")
    _transcode(clip, tmp_path / "out.mp4", hwaccel="cuda")
    assert _fallbacks(caplog) == [f"node 'src': cannot decode '{clip}' with NVDEC (no CUDA "
                                  "device): decoding in software"]
    info = stream(ffprobe(tmp_path / "out.mp4"), "video")
    assert info is not None and int(info["nb_read_frames"]) == 60


def test_hwaccel_that_cannot_open_the_device_decodes_in_software(
        clip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PyTorch sees a GPU but FFmpeg cannot open it (a driver without NVDEC; here, no GPU
    at all, and PyAV's real accelerator is handed over as if PyTorch had seen one): PyAV
    refuses at open, and the input is decoded in software: the same pictures."""
    if torch.cuda.is_available():
        pytest.skip("FFmpeg opens the device here")
    from av.codec.hwaccel import HWAccel
    monkeypatch.setattr("plugins.media.stream_reader.decoder_accel", lambda spec: (
        HWAccel("cuda", allow_software_fallback=True, is_hw_owned=True), None))
    caplog.set_level(logging.WARNING, logger="vidgraph")
    _transcode(clip, tmp_path / "accel.mp4", hwaccel="cuda")
    _transcode(clip, tmp_path / "plain.mp4")
    told = _fallbacks(caplog)
    assert len(told) == 1 and "with NVDEC (" in told[0] and "Operation not permitted" in told[0]
    source = _frames(clip)
    for written in (_frames(tmp_path / "accel.mp4"), _frames(tmp_path / "plain.mp4")):
        assert len(written) == len(source) == 60  # every picture, the clip's own (re-encoded)
        assert max(np.abs(a.astype(int) - b.astype(int)).mean()
                   for a, b in zip(written, source, strict=True)) < 4


def test_hwaccel_names_a_device() -> None:
    from pipeline.core.errors import VidgraphError
    with pytest.raises(VidgraphError, match="hwaccel"):
        run_graph({"nodes": {
            "src": {"plugin": "video_source", "url": "x.mp4", "hwaccel": "nvdec"},
            "out": {"plugin": "null_sink", "input": "src"}}})


def test_nvenc_falls_back_to_libx264(clip: Path, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    """This machine's FFmpeg has h264_nvenc, but no GPU (nor has an H100 NVENC): the file
    is written by libx264, with crf honoured, and the log says why once."""
    caplog.set_level(logging.WARNING, logger="vidgraph")
    out = tmp_path / "nvenc.mp4"
    run_graph({"nodes": {
        "src": {"plugin": "video_source", "url": str(clip)},
        "out": {"plugin": "video_sink", "input": "src", "path": str(out),
                "codec": "h264_nvenc", "crf": 30}}})
    told = _fallbacks(caplog)
    if hardware.encoder("h264_nvenc", "probe", "probe") == "h264_nvenc":
        pytest.skip("this GPU has NVENC")
    assert len(told) == 1 and told[0].startswith("node 'out': h264_nvenc is not available")
    assert told[0].endswith("encoding in software with libx264")
    info = stream(ffprobe(out), "video")
    assert info is not None and info["codec_name"] == "h264"
    assert int(info["nb_read_frames"]) == 60
    assert out.stat().st_size < (clip.stat().st_size)  # crf 30 is smaller than the default


def test_nvdec_planes_become_the_picture_swscale_makes(clip: Path) -> None:
    """NVDEC hands over NV12 (luma, then interleaved chroma); the same planes exported
    from a software NV12 picture, by the same DLPack route, convert to swscale's
    accurate RGB within one level."""
    from av.video.reformatter import Interpolation

    accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    with av.open(str(clip)) as container:
        decoded = next(container.decode(video=0))
    nv12 = decoded.reformat(format="nv12")
    want = nv12.reformat(format="rgb24", interpolation=accurate).to_ndarray()
    got = hardware.device_image(nv12, cosited=True).numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


@pytest.mark.gpu
def test_nvdec_pictures_match_software_decoding(clip: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """On a GPU, NVDEC's pictures become RGB there: the same picture as software decoding
    and swscale, within the rounding of the two conversions."""
    caplog.set_level(logging.WARNING, logger="vidgraph")
    _transcode(clip, tmp_path / "out.mp4", hwaccel="cuda")
    assert not _fallbacks(caplog)
    info = stream(ffprobe(tmp_path / "out.mp4"), "video")
    assert info is not None and int(info["nb_read_frames"]) == 60
    soft = _frames(clip)
    with av.open(str(clip), hwaccel=hardware.decoder_accel("cuda")[0]) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == len(soft) and all(hardware.on_device(f) for f in frames)
    for frame, want in zip(frames, soft, strict=True):
        image = hardware.device_image(frame, cosited=True).cpu().numpy()
        assert np.abs(image.astype(int) - want.astype(int)).mean() < 1.5
