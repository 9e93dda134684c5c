"""``style_transfer``: paint frames in a trained style, batched, with flicker control."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.device import inference_dtype, uses_channels_last
from pipeline.core.frame import Frame
from pipeline.core.node import Stage
from pipeline.kit.batching import group_by_size
from pipeline.kit.compiling import CompileParams, compiled
from pipeline.kit.images import shrunk_size, to_float, to_uint8

from . import checkpoint


class StyleTransferParams(CompileParams):
    """Parameters of ``style_transfer``."""

    model: str = Field(description="a built-in style (the painting's name, '-light' for "
                       "the CPU variant) or a checkpoint from `vidgraph train style`")
    strength: float = Field(1.0, ge=0, le=1, description="0: the input, 1: fully stylised")
    max_side: int | None = Field(None, ge=32, description="stylise a copy scaled so its "
                                 "longer side is at most this, then scale back up")
    temporal: float = Field(0.0, ge=0, lt=1, description="flicker control: how much of the "
                            "previous output to keep where the input did not change")
    half: bool = Field(False, description="fp16 and channels-last on CUDA")


class StyleTransfer(Stage):
    """Stylises every frame with a feed-forward network (Johnson et al. 2016 or Ulyanov et
    al. 2016), all same-size frames of a batch in one pass. ``temporal`` keeps part of a
    stream's previous output wherever its input stayed the same (a static background stops
    shimmering) and none where it changed (moving things stay sharp).

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 64, height: 48, duration: 0.2}
      paint: {plugin: style_transfer, input: src, model: out/my_style.pt, temporal: 0.5}
      out: {plugin: null_sink, input: paint}
    ```
    """

    name = "style_transfer"
    summary = "paint frames in a trained style (feed-forward network), flicker control"
    Params = StyleTransferParams
    params: StyleTransferParams
    stream_state = ("previous",)  # temporal: each stream's last input and output

    def open(self) -> None:
        self.net, self.info = checkpoint.load(self.params.model)
        self.dtype = inference_dtype(self.device, self.params.half)
        self.channels_last = uses_channels_last(self.device, self.params.half)
        self.net.to(self.device, self.dtype)
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = compiled(self.net, self.context.name, self.params.compile)
        self.previous: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # stream -> in, out

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        out = list(frames)
        for group in group_by_size(frames).values():
            images = torch.stack([frames[i].image for i in group])
            for i, painted in zip(group, self._paint(images), strict=True):
                out[i] = frames[i].replace(image=self._steady(frames[i], painted))
        return out

    def _paint(self, images: torch.Tensor) -> torch.Tensor:
        """Blended results (N, 3, H, W) on the 0..255 scale for uint8 frames (N, H, W, 3)."""
        x = to_float(images, 1)
        strength = self.params.strength
        if strength == 0:
            return x
        height, width = x.shape[-2:]
        size = shrunk_size(height, width, self.params.max_side)
        small = x if size is None else F.interpolate(x, size=size, mode="area")
        if self.channels_last:
            small = small.contiguous(memory_format=torch.channels_last)
        styled = self.net((small / 255).to(self.dtype)).float().clamp(0, 1) * 255
        if styled.shape[-2:] != (height, width):
            styled = F.interpolate(styled, size=(height, width), mode="bilinear",
                                   align_corners=False)
        return x + strength * (styled - x)

    def _steady(self, frame: Frame, painted: torch.Tensor) -> torch.Tensor:
        """The frame's picture (uint8 H, W, 3), blended with the stream's previous output
        where its input did not change."""
        keep = self.params.temporal
        source = to_float(frame.image, 1)[0]
        last = self.previous.get(frame.stream)
        if keep > 0 and last is not None and last[0].shape == source.shape:
            change = (source - last[0]).abs().mean(0, keepdim=True)[None]
            # a change of a few grey levels is sensor noise; tens of levels is motion
            change = F.avg_pool2d(change, 5, 1, 2)[0]
            still = torch.exp(-change / 10.0)
            painted = painted + keep * still * (last[1] - painted)
        if keep > 0:
            self.previous[frame.stream] = (source, painted)
        return to_uint8(painted, 1)
