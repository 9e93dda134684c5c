"""NVIDIA's video engines through PyAV: NVDEC decodes into GPU memory (the pictures become
RGB there, handed over by DLPack), NVENC encodes where the GPU has one. Where either is
missing (no CUDA device, a codec NVDEC does not take, a GPU without NVENC such as the
H100) the work falls back to software, and the log says so once per input or output."""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av
import torch

from pipeline.kit.colour import matrix_of, yuv420_to_rgb

from .picture import full_range

log = logging.getLogger("vidgraph")

#: FFmpeg's hardware frame format
_DEVICE_FORMAT = "cuda"
#: NVENC's encoders, and what each falls back to
_FALLBACK = {"h264_nvenc": "libx264", "hevc_nvenc": "libx265", "av1_nvenc": "libsvtav1"}
_told: set[tuple[str, str]] = set()


def tell_once(node: str, where: str, text: str) -> None:
    """Warn that ``where`` falls back to software, once for each node and input/output."""
    if (node, where) not in _told:
        _told.add((node, where))
        log.warning("node '%s': %s", node, text)


def decoder_accel(spec: str) -> tuple[Any | None, str | None]:
    """PyAV's ``HWAccel`` for ``cuda`` or ``cuda:N`` (pictures kept in GPU memory), or
    None and why not."""
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    index = spec.partition(":")[2] or None
    if index is not None and int(index) >= torch.cuda.device_count():
        return None, f"no CUDA device {index}"
    from av.codec.hwaccel import HWAccel
    return HWAccel(_DEVICE_FORMAT, device=index, allow_software_fallback=True,
                   is_hw_owned=True), None


def on_device(frame: av.VideoFrame) -> bool:
    """Whether a decoded picture lies in GPU memory (NVDEC decoded it)."""
    return bool(frame.format.name == _DEVICE_FORMAT)


def device_image(frame: av.VideoFrame, cosited: bool) -> torch.Tensor:
    """``uint8 [H, W, 3]`` RGB on the GPU from an NVDEC picture (NV12, or P010 whose top
    8 bits are kept), finished before it returns: the decoder reuses the picture's memory
    once ``frame`` is released. (A software NV12 picture gives the same on the CPU.)"""
    # PyAV exports CUDA planes only without a stream to order against (its capsule, not
    # the plane itself, so torch does not pass one): luma [H, W], chroma [H/2, W/2, 2],
    # both with the decoder's pitch as their row stride
    luma, chroma = (torch.from_dlpack(plane.__dlpack__()) for plane in frame.planes[:2])
    if luma.dtype != torch.uint8:  # P010: 10 bits in the top of 16
        luma, chroma = ((p.to(torch.int32) >> 8).to(torch.uint8) for p in (luma, chroma))
    image = yuv420_to_rgb(luma, chroma[..., 0], chroma[..., 1], matrix_of(frame.colorspace),
                          full_range(frame), cosited)
    if image.is_cuda:
        torch.cuda.current_stream(image.device).synchronize()
    return image


def encoder(codec: str, node: str, where: str) -> str:
    """``codec``, or its software twin where it is an NVENC encoder this machine cannot
    open (warned once)."""
    fallback = _FALLBACK.get(codec)
    if fallback is None:
        return codec
    if codec in av.codecs_available:
        probe: Any = av.CodecContext.create(codec, "w")
        probe.width, probe.height, probe.pix_fmt = 256, 256, "yuv420p"
        probe.time_base = Fraction(1, 25)
        try:
            probe.open()  # freed with the object
            return codec
        except (av.FFmpegError, OSError) as exc:
            why = str(getattr(exc, "strerror", None) or exc)
    else:
        why = "this FFmpeg has no such encoder"
    tell_once(node, where, f"{codec} is not available for '{where}' ({why}): encoding "
              f"in software with {fallback}")
    return fallback
