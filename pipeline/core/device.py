"""Devices in one place: which device a node runs on, in which dtype, and how frames made
on one GPU stream are handed safely to the next node.

- ``auto`` is CUDA when PyTorch sees a GPU, else the CPU.
- Precision: ``half: true`` on a model node means float16 on CUDA; on the CPU it is
  float32, where half-precision convolutions are slower and less precise.
- Each GPU node works on its own CUDA stream (a :class:`Lane`), so a node's kernels and
  copies overlap with the others'. A frame it makes carries the event recorded after its
  work; the next node's lane waits on that event before it touches the pixels, and a host
  copy (``Frame.to(cpu)``) is blocking, so a CPU node never reads a half-written picture.
  Tensors that cross lanes are recorded on the reader's stream, so the caching allocator
  does not reuse their memory while the reader's kernels still run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from .errors import VidgraphError
from .frame import Frame
from .node import Emit


def resolve_device(spec: str | None, default: str = "auto") -> torch.device:
    """The ``torch.device`` for ``auto|cpu|cuda|cuda:N``; raises if CUDA is asked but absent."""
    text = (spec or default or "auto").strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise VidgraphError(f"device '{text}' requested but CUDA is not available "
                                "(use 'device: auto' to fall back to the CPU)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise VidgraphError(f"device '{text}' requested but only "
                                f"{torch.cuda.device_count()} CUDA device(s) exist")
    return device


#: the one switch between compiled CPU loops (numba, OpenCV) and tensor code; see
#: :func:`compiled_loops`
_COMPILED = {"on": True}


def compiled_loops(tensor: torch.Tensor) -> bool:
    """Whether work on ``tensor`` goes through a compiled CPU loop (numba, OpenCV), which
    only CPU tensors can, rather than the tensor code every other device runs. Every place
    that chooses between the two asks here, so :func:`tensor_code` can run the GPU's code
    whole on the CPU (tests check it there, in fp32 and fp16, without a GPU)."""
    return _COMPILED["on"] and tensor.device.type == "cpu"


@contextlib.contextmanager
def tensor_code() -> Iterator[None]:
    """Within this block, CPU tensors take the tensor code other devices take (for the
    whole process: meant for tests and benchmarks)."""
    before = _COMPILED["on"]
    _COMPILED["on"] = False
    try:
        yield
    finally:
        _COMPILED["on"] = before


def inference_dtype(device: torch.device, half: bool = False) -> torch.dtype:
    """The dtype a model runs in on ``device``: float16 on CUDA when ``half``, else float32."""
    return torch.float16 if half and device.type == "cuda" else torch.float32


def uses_channels_last(device: torch.device, half: bool = False) -> bool:
    """Whether convolutions want channels-last inputs there (tensor cores in fp16)."""
    return half and device.type == "cuda"


class Lane:
    """Where one node's work runs: on the CPU nothing needs ordering, so every method is a
    no-op but for frames that come from a GPU (their pixels are waited for)."""

    def admit(self, frames: Iterable[Frame]) -> None:
        """Make this lane's work wait until ``frames``' pixels are ready."""
        for frame in frames:
            if frame.ready is not None:
                frame.ready.wait(torch.cuda.current_stream(frame.device))

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        """The context the node's work runs in."""
        return contextlib.nullcontext()

    def seal(self, items: Any) -> Any:
        """``items`` (what the node returned), their frames marked with when they are ready."""
        return items


class CudaLane(Lane):
    """A GPU node's own CUDA stream: frames it makes carry the event that marks them ready."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device)

    def admit(self, frames: Iterable[Frame]) -> None:
        for frame in frames:
            if frame.ready is not None:
                self.stream.wait_event(frame.ready)
            if frame.has_pixels and frame.image.is_cuda:
                frame.image.record_stream(self.stream)

    def scope(self) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(self.stream)

    def seal(self, items: Any) -> Any:
        event = torch.cuda.Event()
        event.record(self.stream)
        return _mark(items, event)


def _mark(items: Any, event: Any) -> Any:
    """``items`` with every GPU frame in them carrying ``event`` as its ``ready``."""
    if isinstance(items, Frame):
        return items.replace(ready=event) if items.device.type == "cuda" else items
    if isinstance(items, Emit):
        return Emit(items.port, _mark(items.item, event))
    if isinstance(items, list | tuple):
        return [_mark(item, event) for item in items]
    return items


def lane_for(device: torch.device) -> Lane:
    """The lane a node on ``device`` works in."""
    return CudaLane(device) if device.type == "cuda" else Lane()
