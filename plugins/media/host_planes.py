"""Pictures made on a GPU, brought back for an encoder as 4:2:0 planes only."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.kit.colour import rgb_to_yuv420

#: the encoder formats made on the device, and whether they are full range
_FORMATS = {"yuv420p": False, "yuvj420p": True}
#: buffers in the ring: the array handed out last stays intact while the next copy lands
RING = 3


class HostPlanes:
    """Converts an RGB picture to an encoder's 4:2:0 planes where it lies and copies only
    those to the host, into a small ring of reused pinned buffers (page-locked memory is
    slow to allocate, and only it lets the copy run as DMA). The copy's completion is
    waited on before the planes are handed over."""

    def __init__(self) -> None:
        self.ring: list[torch.Tensor] = []
        self.turn = 0

    @staticmethod
    def takes(fmt: str) -> bool:
        """Whether pictures for an encoder of pixel format ``fmt`` can be made here."""
        return fmt in _FORMATS

    def download(self, image: torch.Tensor, fmt: str) -> np.ndarray:
        """``uint8 [H * 3/2, W]``: the Y, U and V planes of ``image`` (``uint8 [H, W, 3]``,
        even sides) one after the other, in host memory, as PyAV's ``from_ndarray`` takes
        them for ``fmt``."""
        height, width = image.shape[:2]
        planes = torch.cat([p.reshape(-1) for p in rgb_to_yuv420(image, full=_FORMATS[fmt])])
        if image.device.type == "cpu":
            return planes.view(height * 3 // 2, width).numpy()
        if not self.ring or self.ring[0].numel() != planes.numel():
            self.ring = [torch.empty(planes.numel(), dtype=torch.uint8, pin_memory=True)
                         for _ in range(RING)]
        buffer = self.ring[self.turn]
        self.turn = (self.turn + 1) % RING
        buffer.copy_(planes, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(image.device))
        done.synchronize()
        return buffer.view(height * 3 // 2, width).numpy()
