"""``denoise`` (a learned denoiser per frame), ``temporal_denoise`` (merge each frame with
the stream's aligned earlier frames) and ``add_noise`` (seeded noise, for demos and tests)."""

from __future__ import annotations

from collections import deque
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.device import inference_dtype
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage
from pipeline.kit.batching import group_by_size
from pipeline.kit.compiling import CompileParams, compiled
from pipeline.kit.images import LUMA, luma, shrunk_size, to_float, to_uint8

from .apply import denoise_rgb, in_colour, load
from .noise import camera, estimate_sigma, gaussian, gray_pictures
from .temporal import merge

#: noise of the BT.601 luma of three channels with independent noise of 1
LUMA_NOISE = sum(w * w for w in LUMA) ** 0.5


class TemporalDenoiseParams(Params):
    """Parameters of ``temporal_denoise``."""

    frames: int = Field(4, ge=1, le=16, description="earlier frames merged into each one")
    strength: float = Field(1.0, gt=0, le=4, description="how much difference from the "
                            "current frame still counts as noise (more: smoother, but "
                            "motion may smear)")
    sigma: float | Literal["auto"] = Field("auto", description="noise level (0..255 scale), "
                                           "or auto: estimated per frame")
    tile: int = Field(16, ge=4, le=64, description="alignment tile side in pixels")
    search: int = Field(2, ge=1, le=8, description="search radius per pyramid level")


class TemporalDenoise(Stage):
    """Denoises video by merging each frame with the stream's previous ``frames`` noisy
    frames, each first aligned to it tile by tile, coarse to fine (camera motion), and
    weighted per pixel by how well it matches (moving things are not averaged, so they
    do not ghost). Runs on the frames' device.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 96, height: 64, duration: 0.3}
      noisy: {plugin: add_noise, input: src, sigma: 20}
      clean: {plugin: temporal_denoise, input: noisy, frames: 3}
      out: {plugin: null_sink, input: clean}
    ```
    """

    name = "temporal_denoise"
    summary = "multi-frame denoising: align earlier frames by tiles, merge robustly"
    Params = TemporalDenoiseParams
    params: TemporalDenoiseParams
    stream_state = ("history",)

    def open(self) -> None:
        self.history: dict[str, deque[torch.Tensor]] = {}

    def process(self, frame: Frame) -> Frame:
        p = self.params
        current = to_float(frame.image)
        earlier = self.history.get(frame.stream)
        if earlier is None or (earlier and earlier[0].shape != current.shape):
            earlier = self.history[frame.stream] = deque(maxlen=p.frames)
        out = frame
        if earlier:
            sigma = (estimate_sigma(current) if p.sigma == "auto"
                     else torch.tensor([float(p.sigma)], device=current.device))
            merged = merge(current, list(earlier), sigma, p.strength, p.tile, p.search)
            out = frame.replace(image=to_uint8(merged)[0])
        earlier.append(current)
        return out


class AddNoiseParams(Params):
    """Parameters of ``add_noise``."""

    model: Literal["gaussian", "camera"] = Field("gaussian", description="white Gaussian, "
                                                 "or a camera's shot + read noise")
    sigma: float = Field(25.0, ge=0, le=255, description="gaussian: standard deviation")
    shot: float = Field(0.01, ge=0, le=1, description="camera: shot noise gain (linear)")
    read: float = Field(0.01, ge=0, le=1, description="camera: read noise (linear)")
    seed: int = Field(0, description="same seed, same noise")


class AddNoise(Stage):
    """Adds seeded noise to every frame: white Gaussian (``sigma`` on the 0..255 scale) or
    what a camera sensor makes (signal-dependent shot noise plus read noise, in linear
    light). For demos and for measuring denoisers.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 96, height: 64, duration: 0.2}
      noisy: {plugin: add_noise, input: src, model: camera, shot: 0.02}
      out: {plugin: null_sink, input: noisy}
    ```
    """

    name = "add_noise"
    summary = "seeded Gaussian or camera (shot + read) noise"
    Params = AddNoiseParams
    params: AddNoiseParams

    def open(self) -> None:
        self.generator = torch.Generator(self.device).manual_seed(self.params.seed)

    def process(self, frame: Frame) -> Frame:
        p = self.params
        x = to_float(frame.image)
        noisy = (gaussian(x, p.sigma, self.generator) if p.model == "gaussian"
                 else camera(x, p.shot, p.read, self.generator))
        return frame.replace(image=to_uint8(noisy)[0])


class DenoiseParams(CompileParams):
    """Parameters of ``denoise``."""

    model: str = Field("color-light", description="a built-in denoiser (color-opponent, "
                       "the best on colour, color-opponent-light, color, color-light; "
                       "gray, gray-light clean the luma, or every colour plane with "
                       "chroma: denoise) or a checkpoint from `vidgraph train denoise`")
    chroma: Literal["keep", "denoise"] = Field("keep", description="gray models on colour "
                                               "frames: keep the colour as it comes, or "
                                               "clean its noise too (the model cleans the "
                                               "three opponent colour planes: three times "
                                               "the work)")
    sigma: float | Literal["auto"] = Field("auto", description="noise level of the frames "
                                           "(0..255 scale), or auto: estimated per frame")
    max_side: int | None = Field(None, ge=32, description="denoise a copy scaled so its "
                                 "longer side is at most this, then scale back up")
    tile: int | None = Field(None, ge=64, description="process in overlapping tiles of "
                             "this side (large frames, little memory); no seams")
    half: bool = Field(False, description="fp16 on CUDA")
    views: Literal[1, 2, 4, 8] = Field(1, description="self-ensemble: average the model's "
                                       "answers on this many turned and mirrored copies "
                                       "of each frame (better, and that many times the work)")
    split: float | None = Field(None, gt=0, lt=1, description="before/after view: keep the "
                                "input left of this fraction of the width, a line between")


class Denoise(Stage):
    """Removes sensor noise with a learned denoiser (FFDNet or DnCNN). A colour model
    cleans all three channels; a gray model cleans the luma and keeps the colour, or with
    ``chroma: denoise`` cleans the colour's noise too, plane by plane in opponent colour
    (as CBM3D does: better than ``color-light`` at low noise, for more work).
    ``color-opponent`` is a gray network trained as a colour model on those planes, the
    best colour model shipped, for the same work (``color-opponent-light``: the light one,
    for the work of ``gray-light`` with ``chroma: denoise``). With ``sigma: auto`` each
    frame's noise level is estimated from the picture itself. With
    ``batch_size`` the frames of a batch (of any streams) that share a size go through
    the network together, each with its own noise level.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 96, height: 64, duration: 0.2}
      noisy: {plugin: add_noise, input: src, sigma: 20}
      clean: {plugin: denoise, input: noisy, model: color-light, sigma: 20}
      out: {plugin: null_sink, input: clean}
    ```
    """

    name = "denoise"
    summary = "learned denoising (FFDNet, DnCNN), noise level given or estimated"
    Params = DenoiseParams
    params: DenoiseParams

    def open(self) -> None:
        self.net, self.info = load(self.params.model)
        if self.params.chroma == "denoise":
            self.net = in_colour(self.net)
        self.dtype = inference_dtype(self.device, self.params.half)
        self.net.to(self.device, self.dtype)
        self.net = compiled(self.net, self.context.name, self.params.compile)

    def process_batch(self, frames: list[Frame]) -> list[Frame]:
        out = list(frames)
        for group in group_by_size(frames).values():
            clean = to_uint8(self._denoise(to_float(torch.stack([frames[i].image
                                                                 for i in group]))))
            for i, picture in zip(group, clean, strict=True):
                out[i] = frames[i].replace(image=picture)
        return out

    def _denoise(self, x: torch.Tensor) -> torch.Tensor:
        """Denoised pictures (N, 3, H, W, 0..1)."""
        p = self.params
        n, _, height, width = x.shape
        size = shrunk_size(height, width, p.max_side)
        small = x if size is None else F.interpolate(x, size=size, mode="area")
        # a gray model left as one (chroma: keep) cleans the luma alone, told the luma's
        # noise; a colour model is told the noise of R, G and B
        luma_only = getattr(self.net, "channels", 3) == 1
        if p.sigma == "auto":
            sigma = estimate_sigma(luma(small) if luma_only else small)
        else:
            sigma = torch.full((n,), float(p.sigma), device=small.device)
            if luma_only:  # the luma of three channels with independent noise sigma
                # carries 0.668 sigma; of a gray picture (one noise in all three), all of it
                sigma = sigma * torch.where(gray_pictures(small), 1.0, LUMA_NOISE)
        clean = denoise_rgb(self.net, small.to(self.dtype), sigma.to(self.dtype), p.tile, p.views)
        clean = clean.float()
        if clean.shape[-2:] != (height, width):
            clean = x + F.interpolate(clean - small, size=(height, width), mode="bilinear",
                                      align_corners=False)
        if p.split is not None:
            cut = round(width * p.split)
            line = max(1, width // 320)
            clean[..., :cut] = x[..., :cut]
            clean[..., max(0, cut - line):cut + line] = 1.0
        return clean
