"""``filter``: classic looks without weights: cartoon, pencil, stylize, detail (OpenCV's
non-photorealistic rendering) and colour grading with 3D LUTs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.core.errors import VidgraphError
from pipeline.core.frame import Frame
from pipeline.core.node import Params, Stage

Effect = Literal["cartoon", "pencil", "stylize", "detail", "color_grade"]
#: OpenCV's suggested (sigma_s, sigma_r) per effect
_SIGMAS = {"pencil": (60.0, 0.07), "stylize": (60.0, 0.45), "detail": (10.0, 0.15)}


def read_cube(path: str | Path) -> torch.Tensor:
    """A 3D LUT from an Adobe/Resolve ``.cube`` file as (3, N, N, N) indexed [blue, green,
    red] (the file lists red fastest), values in 0..1 of its domain."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VidgraphError(f"cannot read LUT '{path}': {exc}") from exc
    size, low, high, rows = 0, np.zeros(3), np.ones(3), []
    for number, line in enumerate(lines, 1):
        words = line.split("#")[0].split()
        if not words or words[0] == "TITLE":
            continue
        try:
            if words[0] == "LUT_3D_SIZE":
                size = int(words[1])
            elif words[0] == "DOMAIN_MIN":
                low = np.array(words[1:4], float)
            elif words[0] == "DOMAIN_MAX":
                high = np.array(words[1:4], float)
            elif words[0][0].isalpha():
                raise ValueError(f"unsupported keyword '{words[0]}'")
            else:
                rows.append([float(w) for w in words[:3]])
        except (ValueError, IndexError) as exc:
            raise VidgraphError(f"LUT '{path}' line {number}: {exc}") from exc
    if size < 2 or len(rows) != size ** 3:
        raise VidgraphError(f"LUT '{path}': needs LUT_3D_SIZE N and N^3 rows "
                            f"(size {size}, {len(rows)} rows)")
    table = (np.array(rows) - low) / (high - low)
    return torch.from_numpy(table.T.reshape(3, size, size, size).copy()).float()


def warm_film(size: int = 33) -> torch.Tensor:
    """The built-in look: warmer highlights, slightly cooler shadows, a gentle S-curve and
    a little less saturation, as a (3, N, N, N) LUT."""
    axis = torch.linspace(0, 1, size)
    b, g, r = torch.meshgrid(axis, axis, axis, indexing="ij")
    rgb = torch.stack([r, g, b])
    rgb = 0.7 * rgb + 0.3 * (3 * rgb ** 2 - 2 * rgb ** 3)  # part-way to a smoothstep S-curve
    luma = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    rgb = luma + 0.85 * (rgb - luma)
    highlights = torch.tensor([0.06, 0.02, -0.05]).view(3, 1, 1, 1) * luma
    shadows = torch.tensor([-0.01, 0.0, 0.02]).view(3, 1, 1, 1) * (1 - luma)
    return (rgb + highlights + shadows).clamp(0, 1)


def apply_lut(images: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """uint8 pictures (N, H, W, 3) through a (3, S, S, S) LUT, trilinearly interpolated."""
    n, height, width, _ = images.shape
    coords = images.float() / 255 * 2 - 1  # (N, H, W, [r, g, b]) -> grid (x=r, y=g, z=b)
    grid = coords.reshape(1, 1, n * height, width, 3)
    out = F.grid_sample(lut[None].to(images.device), grid, mode="bilinear",
                        padding_mode="border", align_corners=True)
    out = out.reshape(3, n, height, width).permute(1, 2, 3, 0)
    return (out * 255).round().clamp(0, 255).to(torch.uint8)


def cartoon(image: np.ndarray) -> np.ndarray:
    """Flat colour regions (repeated bilateral filtering at half size) under dark edges
    (adaptive threshold of the smoothed luma)."""
    small = cv2.pyrDown(image)
    for _ in range(4):
        small = cv2.bilateralFilter(small, 9, 40, 7)
    flat = cv2.resize(small, (image.shape[1], image.shape[0]))
    gray = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 7)
    edges = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                  9, 4)
    return cv2.bitwise_and(flat, flat, mask=edges)


class FilterParams(Params):
    """Parameters of ``filter``."""

    effect: Effect = Field(description="cartoon, pencil, stylize, detail or color_grade")
    lut: str | None = Field(None, description="color_grade: a .cube file (default: the "
                            "built-in warm film look)")
    color: bool = Field(False, description="pencil: coloured pencil instead of graphite")
    sigma_s: float | None = Field(None, gt=0, le=200, description="pencil/stylize/detail: "
                                  "smoothing extent in pixels (default 60, 60, 10)")
    sigma_r: float | None = Field(None, gt=0, le=1, description="pencil/stylize/detail: "
                                  "how different colours may be and still be smoothed "
                                  "together (default 0.07, 0.45, 0.15)")
    strength: float = Field(1.0, ge=0, le=1, description="blend with the input")


class Filter(Stage):
    """Classic looks that need no network: ``cartoon``, ``pencil`` (graphite or
    coloured), ``stylize`` (watercolour-like) and ``detail`` from OpenCV's
    non-photorealistic rendering, and ``color_grade`` with a 3D LUT (``.cube``, as
    exported by DaVinci Resolve or Photoshop) on the frame's device.

    ```yaml
    nodes:
      src: {plugin: testsrc, width: 96, height: 64, duration: 0.2}
      look: {plugin: filter, input: src, effect: color_grade}
      sketch: {plugin: filter, input: look, effect: pencil, strength: 0.7}
      out: {plugin: null_sink, input: sketch}
    ```
    """

    name = "filter"
    summary = "classic looks: cartoon, pencil, stylize, detail, 3D LUT colour grade"
    Params = FilterParams
    params: FilterParams

    def open(self) -> None:
        p = self.params
        if p.lut is not None and p.effect != "color_grade":
            raise VidgraphError("'lut' applies to effect color_grade only")
        self.lut = (read_cube(p.lut) if p.lut else warm_film()).to(self.device)

    def process(self, frame: Frame) -> Frame:
        image = frame.image
        p = self.params
        if p.effect == "color_grade":
            out = apply_lut(image[None], self.lut)[0]
        else:
            out = torch.from_numpy(self._npr(image.cpu().numpy())).to(image.device)
        if p.strength < 1:
            out = (image.float() + p.strength * (out.float() - image.float())).round()
            out = out.clamp(0, 255).to(torch.uint8)
        return frame.replace(image=out)

    def _npr(self, image: np.ndarray) -> np.ndarray:
        p = self.params
        if p.effect == "cartoon":
            return cartoon(image)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        sigma_s, sigma_r = _SIGMAS[p.effect]
        sigma_s, sigma_r = p.sigma_s or sigma_s, p.sigma_r or sigma_r
        if p.effect == "pencil":
            gray, colour = cv2.pencilSketch(bgr, sigma_s=sigma_s, sigma_r=sigma_r,
                                            shade_factor=0.05)
            out = colour if p.color else cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
        elif p.effect == "stylize":
            out = cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r)
        else:
            out = cv2.detailEnhance(bgr, sigma_s=sigma_s, sigma_r=sigma_r)
        return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
